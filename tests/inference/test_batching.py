"""Chunks and batches: sizes in records, whatever the element's shape."""
import numpy as np

from inference.config import ModelConfig
from inference.data import batching
from inference.data.results import FilePosition


def test_a_chunk_counts_as_its_records_plain_or_keyed():
    chunk = (FilePosition("f.gz", 0), [b"a", b"b", b"c"])
    assert batching.chunk_size(chunk) == 3
    assert batching.chunk_size(("key", chunk)) == 3


def test_the_smallest_batch_is_the_models_own_else_the_default_within_its_max():
    assert batching.min_batch_size(ModelConfig(min_batch_size=5)) == 5
    assert batching.min_batch_size(ModelConfig()) == batching.DEFAULT_MIN_BATCH_SIZE
    assert batching.min_batch_size(ModelConfig(max_batch_size=8)) == 8


def test_batching_kwargs_are_beams_and_count_records():
    kwargs = batching.batching_kwargs(ModelConfig(max_batch_size=64, large_model=True,
                                                  model_copies=2))
    assert kwargs == {"min_batch_size": 32, "max_batch_size": 64, "model_copies": 2,
                      "large_model": True, "element_size_fn": batching.chunk_size}
    assert "max_batch_duration_secs" not in batching.batching_kwargs(ModelConfig())


def test_a_chunk_holds_at_most_1024_records_and_fits_every_models_largest_batch():
    assert batching.chunk_records([ModelConfig(), ModelConfig(min_batch_size=4)]) == 1024
    assert batching.chunk_records([ModelConfig(max_batch_size=8),
                                   ModelConfig(max_batch_size=64)]) == 8


def test_large_records_make_small_chunks():
    assert batching.records_per_chunk([bytes(100)] * 3, 1024) == 1024
    assert batching.records_per_chunk([bytes(1 << 20)], 1024) == 4
    assert batching.records_per_chunk([bytes(8 << 20)], 1024) == 1


def test_length_buckets_group_positions_shortest_first_and_cut_runs():
    lengths = np.array([3, 40, 16, 2, 15, 600, 17])
    # Boundaries are lower-inclusive, as Beam's: 16 opens the bucket [16, 32).
    groups = batching.length_buckets(lengths, (16, 32))
    assert [g.tolist() for g in groups] == [[3, 0, 4], [2, 6], [1, 5]]
    assert [g.tolist() for g in batching.length_buckets(lengths, (16, 32), most=2)] == [
        [3, 0], [4], [2, 6], [1, 5]]
    assert sorted(np.concatenate(batching.length_buckets(lengths)).tolist()) == list(range(7))
    assert batching.length_buckets(np.array([], np.int64)) == []
