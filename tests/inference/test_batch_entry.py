"""`python -m inference.batch`: TFRecords in, one model's rows or PredictionLogs out beside
the dead letters, the verdict as the exit status; a configuration that cannot run is a
one-line error (exit 2)."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from inference import batch
from inference.config import InferenceConfig, InputSpec, ModelConfig
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 40


class Double(torch.nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    """A TorchScript model, its config (a pathlib.Path as uri), and two TFRecord files of
    N records and one record that is not a tf.Example."""
    root = tmp_path_factory.mktemp("batch")
    torch.jit.save(torch.jit.script(Double()), str(root / "double.pt"))
    config = InferenceConfig(models=[ModelConfig(name="double", uri=root / "double.pt",
                                                 inputs=InputSpec(features=["x"]))])
    (root / "config.json").write_text(config.to_json())
    records = helpers.float_examples(np.arange(N, dtype=np.float32).reshape(N, 1), ["x"])
    helpers.write_tfrecords(str(root / "data" / "part-0.gz"), records[:N // 2])
    helpers.write_tfrecords(str(root / "data" / "part-1.gz"), records[N // 2:] + [b"junk"])
    return root


def _rows(pattern_folder):
    rows = []
    for name in sorted(os.listdir(pattern_folder)):
        if name.startswith("rows-") and name.endswith(".json.gz"):
            with gzip.open(os.path.join(pattern_folder, name), "rt") as f:
                rows += [json.loads(line) for line in f if line.strip()]
    return rows


def test_records_in_are_rows_out_and_dead_letters(run_files, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "inference.batch", "--inference_config",
         str(run_files / "config.json"), "--input", str(run_files / "data" / "*.gz"),
         "--output", str(out), "--output_format", "rows", "--max_failure_fraction", "0.1"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
        timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"model 'double': {N + 1} record(s) in, {N} predicted, 1 failed" in done.stdout
    rows = _rows(out / "double")
    assert sorted((row["x"], row["output_0"]) for row in rows) == [
        (float(i), 2.0 * i) for i in range(N)]
    assert {row["model"] for row in rows} == {"double"}
    [failure] = helpers.read_failures(str(out))
    assert (failure.model, failure.record, failure.stage) == ("double", b"junk", "decode")
    assert failure.source.startswith(str(run_files / "data" / "part-1.gz"))


def test_prediction_logs_and_the_failure_budget_as_exit_status(run_files, tmp_path, capsys):
    args = ["--inference_config", str(run_files / "config.json"),
            "--input", str(run_files / "data" / "*.gz"), "--output", str(tmp_path / "out")]
    assert batch.main(args) == 1  # 1 of 41 records failed: more than the default 1%
    error = capsys.readouterr().err
    assert "model 'double': 1 of 41 records failed" in error and "junk" not in error
    logs = helpers.read_prediction_logs(str(tmp_path / "out" / "double" /
                                            "prediction_logs-*.gz"))
    assert len(logs) == N  # written all the same, the dead letter beside them
    assert len(helpers.read_failures(str(tmp_path / "out"))) == 1


@pytest.mark.parametrize("config, message", [
    ({"models": [{"name": "m", "uri": "/no/such/model.pt",
                  "inputs": {"features": ["x"]}}]},
     "model not found: '/no/such/model.pt' does not exist"),
    ({"models": [{"name": "m", "inputs": {"feature": ["x"]}}]},
     "models[0].inputs.feature: unknown field (did you mean 'features'?)"),
    ("{not json", "is not JSON"),
])
def test_a_configuration_that_cannot_run_exits_2_with_one_line(tmp_path, capsys, config,
                                                                 message):
    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    assert batch.main(["--inference_config", str(path), "--input", str(tmp_path / "*.gz"),
                       "--output", str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("batch: ") and message in line
