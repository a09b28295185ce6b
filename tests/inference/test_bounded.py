"""The bounded run: the plan writes every output and dead letter; the verdict fails a run
that lost records, met unreadable files or failed too often."""
import os

import apache_beam as beam
import numpy as np
import torch

from inference import bounded, encoding, io, metrics
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.models import create_handlers
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
    assert "2 of 100 records failed (2.0% > max_failure_fraction 1.0%): 2 at decode" in \
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
    assert sorted(f.model for f in io.read_failures(str(tmp_path / "dead-*.gz"))) == ["a",
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
