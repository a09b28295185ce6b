"""The bounded run: the plan writes every output and dead letter; the verdict fails a run
that lost records, met unreadable files or failed too often; `check` gives it on a run of
the engine on its own, as a Beam user without TFX writes it."""
import os

import apache_beam as beam
import numpy as np
import pytest
import torch

from inference import bounded
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.engine.models import create_handlers
from inference.io import encoding
from inference.io.dead_letters import read_failures
from inference.observe import metrics
from tests import helpers


def _figures(examples_in=100, predictions=100, failures=0, unreadable=0, bytes_read=1000,
             unreadable_bytes=0, read_lost=0):
    model = metrics.ModelFigures(examples_in=predictions + failures, predictions=predictions,
                                 failures=failures, failures_by_stage={"decode": failures},
                                 by_split={"s": {"examples_in": predictions + failures,
                                                 "predictions": predictions,
                                                 "failures": failures}})
    return metrics.RunFigures({"m": model}, {"s": examples_in}, {"s": read_lost}, {"s": 0},
                              {"s": unreadable}, {"s": unreadable_bytes},
                              {"s": unreadable_bytes}, {"s": bytes_read}, {"s": 0}, 1.0)


def test_the_verdict():
    config = InferenceConfig(models=[ModelConfig(name="m")])
    assert bounded.problems(_figures(), config, 0.01) == []
    assert "1 record(s) neither predicted nor dead-lettered" in bounded.problems(
        _figures(predictions=99), config, 0.01)[0]
    assert ("2 of 100 records failed, 98 predicted (2.0% > max_failure_fraction 1.0%): "
            "2 at decode") in \
        bounded.problems(_figures(predictions=98, failures=2), config, 0.01)[0]
    assert "1 file(s) could not be read at all" in bounded.problems(
        _figures(unreadable=1, unreadable_bytes=500), config, 0.5)[0]
    config.skip_unreadable_files = True  # then counted: 500 bytes at 10 bytes per record
    [problem] = bounded.problems(_figures(unreadable=1, unreadable_bytes=500), config, 0.1)
    assert "50 of 150 records failed" in problem and "50 at read" in problem
    assert "40 at read" in bounded.problems(_figures(read_lost=40), config, 0.1)[0]


def test_a_plan_writes_each_models_logs_and_the_dead_letters(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "id.pt"))
    x = np.arange(12, dtype=np.float32).reshape(12, 1)
    path = str(tmp_path / "data.gz")
    helpers.write_tfrecords(path, helpers.float_examples(x, ["x"]) + [b"junk"])
    config = InferenceConfig(models=[ModelConfig(name=n, uri=str(tmp_path / "id.pt"),
                                                 inputs=InputSpec(features=["x"]))
                                     for n in ("a", "b")])
    plan = bounded.Plan(config, create_handlers(config), {"s": [path]},
                        [bounded.Output(n, "s", str(tmp_path / n / "logs"),
                                        encoding.encode_logs, "PredictionLogs")
                         for n in ("a", "b")], str(tmp_path / "dead"))
    pipeline = beam.Pipeline()
    plan.expand(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    for name in ("a", "b"):
        assert len(helpers.read_prediction_logs(str(tmp_path / name / "logs-*.gz"))) == 12
    assert sorted(f.model for f in read_failures(str(tmp_path / "dead-*.gz"))) == ["a",
                                                                                      "b"]
    figures = metrics.run_figures(result, config.models, ["s"], 1.0)
    assert bounded.problems(figures, config, 0.1) == []
    assert {n: (f.predictions, f.failures) for n, f in figures.models.items()} == {
        "a": (12, 1), "b": (12, 1)}


def test_outputs_sharing_a_prefix_are_one_file_set_numbered_across_them(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "id.pt"))
    splits = {}
    for split, n in (("eval", 5), ("train", 7), ("empty", 0)):
        splits[split] = [str(tmp_path / f"{split}.gz")]
        helpers.write_tfrecords(splits[split][0], helpers.float_examples(
            np.arange(n, dtype=np.float32).reshape(n, 1), ["x"]))
    config = InferenceConfig(models=[ModelConfig(name="m", uri=str(tmp_path / "id.pt"),
                                                 inputs=InputSpec(features=["x"]))])
    prefix = str(tmp_path / "out" / "logs")
    plan = bounded.Plan(config, create_handlers(config), splits,
                        [bounded.Output("m", s, prefix, encoding.encode_logs, "PredictionLogs")
                         for s in splits], str(tmp_path / "dead"))
    with beam.Pipeline() as pipeline:
        plan.expand(pipeline)
    # One shard per split that has records, numbered as one sink would; no staging left.
    assert sorted(os.listdir(tmp_path / "out")) == ["logs-00000-of-00002.gz",
                                                    "logs-00001-of-00002.gz"]
    assert len(helpers.read_prediction_logs(f"{prefix}-*.gz")) == 12


class CountTokens(torch.nn.Module):
    def forward(self, ids):
        return (ids != 0).sum(dim=1, keepdim=True).float()


@pytest.fixture(scope="module")
def token_ids(tmp_path_factory):
    """30 records of 2 to 6 token ids, and a TorchScript model counting them."""
    folder = tmp_path_factory.mktemp("token_ids")
    rng = np.random.RandomState(0)
    ids = [rng.randint(1, 100, size=rng.randint(2, 7)).astype(np.int64) for _ in range(30)]
    helpers.write_tfrecords(str(folder / "examples" / "ids.gz"),
                            [helpers.example({"input_ids": seq}) for seq in ids])
    torch.jit.save(torch.jit.script(CountTokens()), str(folder / "count.pt"))
    return folder, ids


def _run(folder, padding: str, max_failure_fraction=bounded.DEFAULT_MAX_FAILURE_FRACTION):
    config = InferenceConfig(models=[ModelConfig(
        name="count", uri=str(folder / "count.pt"),
        inputs=InputSpec(features=["input_ids"], dtype="int64", padding=padding))])
    out = str(folder / padding)
    plan = bounded.Plan(config, create_handlers(config),
                        {"": [str(folder / "examples" / "*.gz")]},
                        [bounded.Output("count", "", os.path.join(out, "prediction_logs"),
                                        encoding.encode_logs, "PredictionLogs")],
                        os.path.join(out, "failures"))
    pipeline = beam.Pipeline()
    plan.expand(pipeline)
    return bounded.check(pipeline.run(), plan, max_failure_fraction), out


def test_a_run_with_no_predictions_fails_loudly_saying_how_to_fix_it(token_ids):
    folder, ids = token_ids
    with pytest.raises(bounded.RunFailed) as raised:
        _run(folder, padding="none")
    message = str(raised.value)
    assert len({len(seq) for seq in ids}) > 2
    assert "model 'count': 30 of 30 records failed, 0 predicted" in message
    assert "30 at preprocess" in message and "must hold exactly 1 value(s)" in message
    assert "set inputs.padding='longest'" in message
    assert f"Dead letters (record, stage, error) are in {folder}/none/failures-*" in message
    dead = list(read_failures(f"{folder}/none/failures-*"))
    assert len(dead) == 30 and {f.stage for f in dead} == {"preprocess"}


def test_a_run_that_does_its_job_passes_with_its_figures(token_ids):
    folder, ids = token_ids
    figures, out = _run(folder, padding="longest")
    assert figures.models["count"].predictions == 30
    assert figures.models["count"].failures == 0
    logs = helpers.read_prediction_logs(f"{out}/prediction_logs-*.gz")
    assert len(logs) == 30
    # A threshold of 1 lets every record fail: the run is not failed, its figures say so.
    figures, _ = _run(folder, padding="none", max_failure_fraction=1.0)
    assert figures.models["count"].predictions == 0


def test_a_run_that_read_nothing_says_so(tmp_path, token_ids):
    folder, _ = token_ids
    helpers.write_tfrecords(str(tmp_path / "examples" / "empty.gz"), [])
    config = InferenceConfig(models=[ModelConfig(
        name="count", uri=str(folder / "count.pt"),
        inputs=InputSpec(features=["input_ids"], dtype="int64"))])
    plan = bounded.Plan(config, create_handlers(config),
                        {"eval": [str(tmp_path / "examples" / "*.gz")]}, [],
                        str(tmp_path / "failures"))
    pipeline = beam.Pipeline()
    plan.expand(pipeline)
    with pytest.raises(ValueError, match=r"no examples to infer: the splits \['eval'\] are "
                                         r"empty \(.*examples/\*\.gz\)"):
        bounded.check(pipeline.run(), plan)
