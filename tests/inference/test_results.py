"""Where a chunk's records came from, as people read it; a chunk's predictions taken apart."""
import numpy as np

from inference.data.results import ChunkResult, EventTime, FilePosition, describe, part_of


def test_a_files_chunk_names_each_record_by_its_index():
    origin = FilePosition("gs://b/data-00001.gz", 64)
    assert describe(origin, 3) == "gs://b/data-00001.gz:record 67"
    assert part_of(origin) == FilePosition("gs://b/data-00001.gz")
    assert describe(part_of(origin), 3) == "gs://b/data-00001.gz"
    assert describe(EventTime(12.5), 0) == ""  # a streaming chunk: its event time
    assert part_of(EventTime(12.5)) == EventTime(12.5)
    assert describe(None, 0) == ""


def test_taking_rows_keeps_their_records_outputs_and_logs_together():
    result = ChunkResult("m", FilePosition("f", 0), [b"a", b"b", b"c"],
                         {"y": np.array([[1.0], [2.0], [3.0]])}, [], [b"la", b"lb", b"lc"])
    taken = result.take([2, 0])
    assert taken.records == [b"c", b"a"] and taken.prediction_logs == [b"lc", b"la"]
    assert taken.outputs["y"].tolist() == [[3.0], [1.0]]
    assert result._replace(prediction_logs=None).take([1]).prediction_logs is None
