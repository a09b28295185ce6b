"""Model outputs as columns: named, batch-major, ragged rows as objects."""
import numpy as np
import pytest
import torch

from inference.data import columns
from inference.data.columns import PREDICTION_LOG


def test_batch_outputs_are_named_and_must_hold_a_row_per_record():
    assert list(columns.from_batch(np.ones((3, 2)), 3)) == ["output_0"]
    named = columns.from_batch((torch.ones(3, 1), np.zeros(3)), 3, ["score", "label"])
    assert set(named) == {"score", "label"} and named["score"].shape == (3, 1)
    assert list(columns.from_batch({"a": np.ones(3)}, 3)) == ["a"]
    with pytest.raises(ValueError, match="leading dimension of the batch size, 3"):
        columns.from_batch(np.ones((2, 1)), 3)
    with pytest.raises(ValueError, match="do not match"):
        columns.from_batch(np.ones(3), 3, ["a", "b"])


def test_per_example_outputs_stack_when_they_can_else_stay_ragged():
    stacked = columns.from_examples([np.float32([1, 2]), np.float32([3, 4])])
    assert stacked["output_0"].dtype == np.float32 and stacked["output_0"].shape == (2, 2)
    strings = columns.from_examples([{"label": b"big"}, {"label": b"small"}])
    assert strings["label"].dtype == object and list(strings["label"]) == [b"big", b"small"]
    ragged = columns.from_examples([np.ones(1), np.ones(3)])["output_0"]
    assert ragged.dtype == object and [len(r) for r in ragged] == [1, 3]
    with pytest.raises(ValueError, match="different outputs"):
        columns.stack([{"a": np.ones(1)}, {"b": np.ones(1)}])


def test_prediction_logs_from_a_handler_become_the_log_column():
    from tensorflow_serving.apis import prediction_log_pb2
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "m"
    assert list(columns.from_examples([log])[PREDICTION_LOG]) == [log.SerializeToString()]


def test_rows_take_and_concatenate():
    outputs = {"a": np.arange(4), "b": np.arange(8).reshape(4, 2)}
    assert columns.rows({"a": np.arange(2)}) == [{"a": 0}, {"a": 1}]
    assert columns.row(outputs, 1)["b"].tolist() == [2, 3]
    taken = columns.take(outputs, [3, 0])
    assert taken["a"].tolist() == [3, 0] and taken["b"].tolist() == [[6, 7], [0, 1]]
    joined = columns.concatenate([taken, columns.take(outputs, [1])])
    assert joined["a"].tolist() == [3, 0, 1]
    assert columns.concatenate([]) == {}
    with pytest.raises(ValueError, match="outputs changed"):
        columns.concatenate([{"a": np.ones(1)}, {"b": np.ones(1)}])
