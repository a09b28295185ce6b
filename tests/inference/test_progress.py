"""Progress lines of a long run: per model, records done, share of the input bytes read,
records/s and ETA, every interval; none on a run shorter than the interval."""
import logging
import re

import numpy as np
import torch

from components.bulk_inferrer import spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.observe import progress
from tests import helpers


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_tracker_logs_each_model_every_interval(caplog):
    clock = Clock()
    tracker = progress.Tracker(interval=10, clock=clock)
    tracker.inferred("m", 5)  # not started: nothing counted
    tracker.start()
    tracker.input_file(1000)
    tracker.input_file(3000)
    with caplog.at_level(logging.INFO, logger="inference.observe.progress"):
        clock.now += 2
        tracker.read(1000)
        tracker.inferred("a", 500)
        tracker.inferred("b", 250)
        assert not caplog.records  # a short run stays quiet
        clock.now += 8  # 10 s since the start: "a" has run 8 s, "b" 8 s
        tracker.inferred("a", 300)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "progress: model 'a': 800 records done, 25% of the input bytes read, "
        "100 records/s, ETA 24 s",
        "progress: model 'b': 250 records done, 25% of the input bytes read, "
        "31 records/s, ETA 24 s"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="inference.observe.progress"):
        clock.now += 5
        tracker.read(10)  # within the interval of the last lines
        assert not caplog.records
        tracker.stop()
        clock.now += 20
        tracker.read(10)
        assert not caplog.records


def test_a_bulk_inferrer_run_reports_its_progress(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("INFERENCE_PROGRESS_SECS", "0.000001")  # every batch
    x = np.random.RandomState(3).rand(300, 2).astype(np.float32)
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {
        "eval": helpers.float_examples(x, ["f0", "f1"])})
    model = torch.nn.Linear(2, 1)
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.pt"))
    config = InferenceConfig(models=[ModelConfig(
        name="m", uri=str(tmp_path / "m.pt"), inputs=InputSpec(features=["f0", "f1"]),
        max_batch_size=32)])
    with caplog.at_level(logging.INFO, logger="inference.observe.progress"):
        helpers.run_bulk_inferrer(tmp_path, {spec.EXAMPLES_KEY: [examples]}, config)
    lines = [r.getMessage() for r in caplog.records if r.name == "inference.observe.progress"]
    pattern = re.compile(r"progress: model 'm': ([\d,]+) records done, (\d+)% of the input "
                         r"bytes read, [\d,]+ records/s, ETA \d+ s")
    matched = [pattern.fullmatch(line) for line in lines]
    assert lines and all(matched), lines
    done = [int(m.group(1).replace(",", "")) for m in matched]
    assert done == sorted(done) and done[-1] == 300
    assert int(matched[-1].group(2)) == 100
    assert not progress.TRACKER.active  # the run is over
