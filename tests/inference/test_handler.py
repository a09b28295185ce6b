"""The model handler on its own: batches of chunks in, one ChunkResult per chunk out; bad
records isolated, slow ones timed out, user functions applied, worker deaths noted."""
import json
import os
import pickle
import time

import numpy as np
import pytest
import torch

from inference.config import InputSpec, ModelConfig
from inference.data.results import FilePosition
from inference.engine import worker_health
from inference.engine.models import create_handler
from tests import helpers
from tests.components import faulty_models

FEATURES = ["f0", "f1", "f2"]


def _records(values):
    return helpers.float_examples(np.asarray(values, np.float32), FEATURES)


@pytest.fixture(scope="module")
def sum_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sum") / "sum.pt")
    torch.save(faulty_models.SumModel().state_dict(), path)
    return path


def _handler(path, **kwargs):
    options = {"model_class": "tests.components.faulty_models.SumModel",
               "model_params": kwargs.pop("model_params", {})}
    timeout = kwargs.pop("timeout_secs", None)
    breadcrumbs = kwargs.pop("breadcrumbs", None)
    return create_handler(ModelConfig(name="sum", framework="pytorch",
                                      inputs=InputSpec(features=FEATURES), options=options,
                                      **kwargs), path, timeout_secs=timeout,
                          breadcrumbs=breadcrumbs)


def test_each_chunk_gets_its_records_outputs_and_failures(sum_model):
    handler = _handler(sum_model)
    model = handler.load_model()
    first = _records([[1, 2, 3], [faulty_models.RAISE_MARKER, 0, 0], [4, 5, 6]])
    second = [b"not an example"] + _records([[0.5, 0.5, 0.5]])
    results = handler.run_inference([(FilePosition("a.gz", 10), first),
                                     (FilePosition("b.gz", 0), second)], model)
    assert [r.origin for r in results] == [("a.gz", 10), ("b.gz", 0)]
    assert results[0].records == [first[0], first[2]]
    assert results[0].outputs["output_0"][:, 0].tolist() == [6.0, 15.0]
    assert [(f.stage, f.source) for f in results[0].failures] == [("inference",
                                                                    "a.gz:record 11")]
    assert results[1].records == [second[1]]
    assert results[1].outputs["output_0"][:, 0].tolist() == [1.5]
    assert [(f.stage, f.source, f.model) for f in results[1].failures] == [
        ("decode", "b.gz:record 0", "sum")]


def test_an_empty_batch_is_no_work(sum_model):
    """BatchElements closes its open batch, even an empty one, before a chunk larger than
    its target: no model is asked to infer nothing, and nothing is counted."""
    assert _handler(sum_model).run_inference([], model=None) == []


def test_records_whose_features_do_not_fit_fail_at_preprocess_alone(sum_model):
    handler = _handler(sum_model)
    records = _records([[1, 1, 1]]) + [helpers.example({"f0": [1.0], "f1": [1.0]})]
    [result] = handler.run_inference([(None, records)], handler.load_model())
    assert len(result.records) == 1
    assert "'f2' is missing" in result.failures[0].message


def test_a_record_slow_on_its_own_times_out_and_only_it(sum_model):
    handler = _handler(sum_model, model_params={"sleep_secs": 3.0}, timeout_secs=0.5)
    records = _records([[1, 1, 1], [faulty_models.SLOW_MARKER, 0, 0], [2, 2, 2]])
    [result] = handler.run_inference([(None, records)], handler.load_model())
    assert result.outputs["output_0"][:, 0].tolist() == [3.0, 6.0]
    assert [f.stage for f in result.failures] == ["timeout"]


def test_length_buckets_pad_each_bucket_to_its_own_longest(tmp_path):
    class Width(torch.nn.Module):
        def forward(self, ids):
            return torch.ones(ids.shape[0], 1) * ids.shape[1]
    path = str(tmp_path / "width.pt")
    torch.jit.save(torch.jit.script(Width()), path)
    handler = create_handler(ModelConfig(
        name="w", inputs=InputSpec(features=["ids"], dtype="int64", padding="longest"),
        length_feature="ids", length_buckets=[3]), path)
    records = [helpers.example({"ids": list(range(n))}) for n in (1, 5, 2, 6)]
    [result] = handler.run_inference([(None, records)], handler.load_model())
    assert result.records == records  # in their order, whatever the buckets
    assert result.outputs["output_0"][:, 0].tolist() == [2.0, 6.0, 2.0, 6.0]


def test_one_length_bucket_keeps_each_output_with_its_record(tmp_path):
    """Records of lengths out of order, all in one bucket: each output is its own
    record's (the bucket's records are ordered by length to batch them)."""
    class Sum(torch.nn.Module):
        def forward(self, ids):
            return ids.sum(dim=1, keepdim=True).float()
    path = str(tmp_path / "sum.pt")
    torch.jit.save(torch.jit.script(Sum()), path)
    handler = create_handler(ModelConfig(
        name="s", inputs=InputSpec(features=["ids"], dtype="int64", padding="longest"),
        length_feature="ids", length_buckets=[100]), path)
    records = [helpers.example({"ids": ids}) for ids in ([1, 2, 3], [1], [1, 2])]
    [result] = handler.run_inference([(None, records)], handler.load_model())
    assert result.records == records
    assert result.outputs["output_0"][:, 0].tolist() == [6.0, 1.0, 3.0]


def test_postprocess_runs_on_each_prediction_and_its_failures_are_its_own(tmp_path,
                                                                          sum_model):
    module = tmp_path / "post.py"
    module.write_text("def label(result):\n"
                      "    if result.inference[0] > 100: raise ValueError('too big')\n"
                      "    return result._replace(inference={'label': b'big' if "
                      "result.inference[0] > 5 else b'small'})\n")
    handler = _handler(sum_model, postprocess_fn=f"{module}:label")
    [result] = handler.run_inference([(None, _records([[1, 1, 1], [3, 3, 3],
                                                       [100, 1, 1]]))], handler.load_model())
    assert result.outputs["label"].tolist() == [b"small", b"big"]
    assert [f.stage for f in result.failures] == ["postprocess"]


def test_the_handler_pickles_and_loads_where_it_lands(sum_model):
    handler = pickle.loads(pickle.dumps(_handler(sum_model, timeout_secs=5)))
    started = time.time()
    model = handler.load_model()
    elapsed = time.time() - started
    seconds, transform_seconds = model.take_load_seconds()
    assert 0 < seconds <= elapsed  # the model's load, within the whole load_model
    assert transform_seconds is None  # no tf.Transform graph
    assert model.take_load_seconds() is None
    [result] = handler.run_inference([(None, _records([[1, 2, 3]]))], model)
    assert result.outputs["output_0"].tolist() == [[6.0]]


def test_a_worker_notes_the_batch_in_flight_and_clears_it(tmp_path, sum_model):
    crumbs = str(tmp_path / "crumbs")
    handler = _handler(sum_model, breadcrumbs=crumbs)
    handler.run_inference([(FilePosition("a.gz", 0), _records([[1, 2, 3]]))], handler.load_model())
    assert worker_health.worker_deaths(crumbs) == []  # done: nothing in flight
    with open(os.path.join(crumbs, "inflight-1234.json"), "w") as f:  # a dead worker's
        json.dump({"model": "sum", "records": 2, "pid": 1234,
                   "sources": ["a.gz:record 0 to record 1"]}, f)
    with open(os.path.join(crumbs, "faults-1234.log"), "w") as f:
        f.write("Fatal Python error: Segmentation fault\n\nThread 0x1 (most recent call "
                "first):\n  File x\n\nCurrent thread 0x2 (most recent call first):\n"
                "  File \"model.py\", line 3 in forward\n")
    [report] = worker_health.worker_deaths(crumbs)
    assert report.startswith("model 'sum' was inferring a batch of 2 record(s) in worker "
                             "process 1234, from a.gz:record 0 to record 1")
    assert "Segmentation fault" in report and "in forward" in report
    assert "Thread 0x1" not in report


def test_a_batch_over_the_models_max_runs_in_parts_within_it(tmp_path):
    """Beam's BatchElements closes a batch after the chunk that reaches its target, so a
    batch of chunks can pass max_batch_size: the model never sees more than its max."""
    class BatchSize(torch.nn.Module):
        def forward(self, x):
            return torch.ones(x.shape[0], 1) * x.shape[0]
    path = str(tmp_path / "size.pt")
    torch.jit.save(torch.jit.script(BatchSize()), path)
    handler = create_handler(ModelConfig(name="m", inputs=InputSpec(features=["f0"]),
                                         max_batch_size=4), path)
    chunks = [(None, _records([[1, 1, 1]] * 3)) for _ in range(3)]
    results = handler.run_inference(chunks, handler.load_model())
    assert [r.outputs["output_0"][:, 0].tolist() for r in results] == [
        [4.0, 4.0, 4.0], [4.0, 4.0, 4.0], [4.0, 4.0, 1.0]]  # parts of 4, 4 and 1


def test_inference_args_are_refused_for_options(sum_model):
    with pytest.raises(ValueError, match="set the model's options"):
        _handler(sum_model).validate_inference_args({"k": 1})


def test_model_handler_builds_its_decoder_with_the_model(tmp_path):
    """Decoders build lazily (they do not pickle), and a tf.Transform graph takes seconds:
    the handler builds its decoder when it loads the model, not in the first batch (whose
    time, and timeout, are the model's own)."""
    import joblib
    from sklearn.linear_model import LinearRegression

    from inference.engine.models import create_handler

    path = str(tmp_path / "model.joblib")
    joblib.dump(LinearRegression().fit(np.eye(2, dtype=np.float32), [0.0, 1.0]), path)
    model = ModelConfig(name="m", inputs=InputSpec(features=["a", "b"]),
                        options={"trusted": True})
    handler = create_handler(model, path)
    built = handler._decoder._decoders
    assert not hasattr(built, "decoder")  # this thread's

    loaded = handler.load_model()

    assert hasattr(built, "decoder")
    [result] = handler.run_inference([(None, [helpers.example({"a": [1.0], "b": [0.0]})])],
                                     loaded)
    assert result.outputs["output_0"][0] == pytest.approx(0.0, abs=1e-6)


def test_a_held_handler_keeps_its_model_between_setups(sum_model):
    """Beam keeps a shared model alive only while a DoFn holds it or while it is the last
    shared object acquired; the local streaming runner sets RunInference up for every
    bundle, acquiring its model status first. A held handler's model survives that."""
    from apache_beam.utils import shared

    class Status:
        pass

    def setups(handler) -> int:
        loads = []
        handle = shared.Shared()

        def load():
            loads.append(1)
            return handler.load_model()

        for bundle in range(3):
            shared.Shared().acquire(Status, tag=f"status-{bundle}")
            model = handle.acquire(load, tag="model")
            assert handler.run_inference([(None, _records([[1, 2, 3]]))], model)
            del model  # the bundle's DoFn is dropped
        return len(loads)

    assert setups(_handler(sum_model)) == 3
    assert setups(_handler(sum_model).held()) == 1
