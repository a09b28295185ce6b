"""Where a chunk's records came from, as people read it."""
from inference.data.results import describe, part_of


def test_a_files_chunk_names_each_record_by_its_index():
    assert describe(("gs://b/data-00001.gz", 64), 3) == "gs://b/data-00001.gz:record 67"
    assert describe(part_of(("gs://b/data-00001.gz", 64)), 3) == "gs://b/data-00001.gz"
    assert describe(12.5, 0) == ""  # a streaming chunk: its event time
    assert part_of(12.5) == 12.5
