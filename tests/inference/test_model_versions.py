"""A model's versions in a file pattern: the newest serves at load, a newer one from a
worker's next check on, and one that cannot load is skipped while the serving one goes on."""
import logging
import os
import time

import pytest

from inference.config import ConfigError, InputSpec, ModelConfig
from inference.engine import model_versions
from inference.engine.model_versions import ModelVersions
from inference.engine.models import create_handler
from tests import helpers
from tests.inference.test_streaming import Constant, _save

CHECK_SECS = 0.2


def _write(folder, name: str, value: float, age_secs: float = 0.0) -> str:
    """A TorchScript model that outputs `value`, written `age_secs` ago."""
    path = _save(Constant(value), folder / name)
    stamp = time.time() - age_secs
    os.utime(path, (stamp, stamp))
    return path


def _outputs(handler, model) -> list:
    [result] = handler.run_inference([(None, [helpers.example({"x": [1.0]})])], model)
    return result.outputs["output_0"].ravel().tolist()


def _watched(folder, first: str):
    handler = create_handler(ModelConfig(name="clf", inputs=InputSpec(features=["x"])),
                             first)
    return handler.watching(ModelVersions(str(folder / "*.pt"), CHECK_SECS))


def test_newest_is_by_modification_time_then_name(tmp_path):
    assert model_versions.newest(str(tmp_path / "*.pt")) is None
    with pytest.raises(ConfigError, match="no model file matches"):
        model_versions.newest_path(str(tmp_path / "*.pt"))
    _write(tmp_path, "b.pt", 1.0, age_secs=60)
    newer = _write(tmp_path, "a.pt", 2.0, age_secs=30)
    assert model_versions.newest_path(str(tmp_path / "*.pt")) == newer
    tied = _write(tmp_path, "c.pt", 3.0, age_secs=30)
    os.utime(newer, (os.path.getmtime(tied),) * 2)
    assert model_versions.newest_path(str(tmp_path / "*.pt")) == tied


def test_a_newer_version_serves_from_the_first_batch_after_the_check(tmp_path):
    v1 = _write(tmp_path, "model-v1.pt", 1.0, age_secs=60)
    handler = _watched(tmp_path, v1)
    model = handler.load_model()
    assert _outputs(handler, model) == [1.0]
    _write(tmp_path, "model-v2.pt", 2.0)
    assert _outputs(handler, model) == [1.0]  # checked again only after CHECK_SECS
    time.sleep(CHECK_SECS * 1.5)
    assert _outputs(handler, model) == [2.0]
    assert model.take_load_seconds() is None  # the batch reported the new version's load


def test_the_newest_version_serves_from_the_load(tmp_path):
    """A worker that loads the model (a new worker, or the model collected and loaded
    again) starts on the newest version, not the one the pipeline was built with."""
    v1 = _write(tmp_path, "model-v1.pt", 1.0, age_secs=60)
    _write(tmp_path, "model-v2.pt", 2.0)
    handler = _watched(tmp_path, v1)
    assert _outputs(handler, handler.load_model()) == [2.0]


def test_a_version_that_cannot_load_is_skipped_until_rewritten(tmp_path, caplog):
    v1 = _write(tmp_path, "model-v1.pt", 1.0, age_secs=60)
    handler = _watched(tmp_path, v1)
    model = handler.load_model()
    broken = tmp_path / "model-v2.pt"
    broken.write_bytes(b"half an upload")
    time.sleep(CHECK_SECS * 1.5)
    with caplog.at_level(logging.ERROR):
        assert _outputs(handler, model) == [1.0]
        time.sleep(CHECK_SECS * 1.5)
        assert _outputs(handler, model) == [1.0]
        reloaded = handler.load_model()  # a worker loads the model again: v1, quietly
        assert _outputs(handler, reloaded) == [1.0]
    failures = [r for r in caplog.records if "could not be loaded" in r.getMessage()]
    assert len(failures) == 1 and str(broken) in failures[0].getMessage()
    _write(tmp_path, "model-v2.pt", 2.0)  # the upload completes: rewritten, tried again
    time.sleep(CHECK_SECS * 1.5)
    assert _outputs(handler, model) == [2.0]


def test_check_secs_must_be_positive():
    with pytest.raises(ConfigError, match="check_secs must be > 0"):
        ModelVersions("*.pt", 0)


def test_the_serving_file_rewritten_badly_keeps_it_serving_and_deleted_rolls_back(tmp_path):
    """A bad rewrite of the serving version's file does not send the worker back to an
    older version; deleting the file does."""
    _write(tmp_path, "model-v1.pt", 1.0, age_secs=60)
    v2 = _write(tmp_path, "model-v2.pt", 2.0, age_secs=30)
    handler = _watched(tmp_path, v2)
    model = handler.load_model()
    assert _outputs(handler, model) == [2.0]
    with open(v2, "wb") as f:
        f.write(b"half an upload")
    time.sleep(CHECK_SECS * 1.5)
    assert _outputs(handler, model) == [2.0]
    os.remove(v2)
    time.sleep(CHECK_SECS * 1.5)
    assert _outputs(handler, model) == [1.0]


def test_a_version_that_failed_is_tried_again_after_a_wait_that_doubles(monkeypatch, caplog):
    now = [100.0]
    monkeypatch.setattr(model_versions.time, "monotonic", lambda: now[0])
    versions = ModelVersions("gs://bucket/retried-*.pt", check_secs=10)
    version = ("gs://bucket/retried-1.pt", 5.0)
    with caplog.at_level(logging.WARNING):
        versions.failed(version, OSError("503"), "clf")
        assert versions.loadable([version]) == []
        now[0] += 10 * model_versions.RETRY_FIRST_CHECKS
        assert versions.loadable([version]) == [version]
        versions.failed(version, OSError("503"), "clf")  # again: twice the wait
        now[0] += 10 * model_versions.RETRY_FIRST_CHECKS
        assert versions.loadable([version]) == []
        now[0] += 10 * model_versions.RETRY_FIRST_CHECKS
        assert versions.loadable([version]) == [version]
        for _ in range(20):
            versions.failed(version, OSError("503"), "clf")
        now[0] += model_versions.RETRY_MAX_SECS
        assert versions.loadable([version]) == [version]  # the wait stops growing
    levels = [r.levelname for r in caplog.records if "could not be loaded" in r.getMessage()]
    assert levels == ["ERROR"] + ["WARNING"] * 21
    assert versions.load_version(lambda path: path, version) == version[0]
    versions.failed(version, OSError("503"), "clf")  # failed anew after a load: logged anew
    assert caplog.records[-1].levelname == "ERROR"


def test_a_file_that_could_not_be_read_serves_once_it_can(tmp_path, caplog):
    """A storage hiccup: the same file, its modification time unchanged, loads on a later
    check."""
    v1 = _write(tmp_path, "model-v1.pt", 1.0, age_secs=60)
    handler = _watched(tmp_path, v1)
    model = handler.load_model()
    v2 = tmp_path / "model-v2.pt"
    v2.write_bytes(b"not readable yet")
    written = os.stat(v2).st_mtime_ns
    time.sleep(CHECK_SECS * 1.5)
    with caplog.at_level(logging.ERROR):
        assert _outputs(handler, model) == [1.0]
    assert [r for r in caplog.records if str(v2) in r.getMessage()]
    _save(Constant(2.0), v2)
    os.utime(v2, ns=(written, written))  # the same version, readable now
    time.sleep(CHECK_SECS * (model_versions.RETRY_FIRST_CHECKS + 0.5))
    assert _outputs(handler, model) == [2.0]
