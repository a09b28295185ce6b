"""The streaming entry point against Google's Pub/Sub emulator, on the local runner (Beam's
DirectRunner in streaming mode): messages published to a real topic, rows and dead letters
pulled from real topics. The emulator is started (and stopped) here, on a free port; where
it is not installed the tests are skipped with the reason."""
import base64
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from inference import streaming
from inference.config import InferenceConfig, InputSpec, ModelConfig
from inference.data import examples
from tests import helpers, pubsub_emulator
from tests.inference.test_streaming import Constant, _save

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    try:
        server = pubsub_emulator.PubSubEmulator(tmp_path_factory.mktemp("pubsub")).start()
    except pubsub_emulator.Unavailable as e:
        pytest.skip(f"the Pub/Sub emulator cannot run here: {e}")
    previous = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    yield server
    server.stop()
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class Topics:
    """A test's own topics (each with a subscription of the same name)."""

    def __init__(self, emulator):
        suffix = uuid.uuid4().hex[:8]
        self.emulator = emulator
        self.requests = emulator.topic(f"requests-{suffix}")
        self.predictions = emulator.topic(f"predictions-{suffix}")
        self.dead_letters = emulator.topic(f"dead-letters-{suffix}")
        self.names = {"requests": f"requests-{suffix}", "predictions": f"predictions-{suffix}",
                      "dead_letters": f"dead-letters-{suffix}"}

    def args(self):
        return ["--input_subscription", self.emulator.subscription(self.names["requests"]),
                "--output_topic", self.predictions, "--dead_letter_topic", self.dead_letters]

    def rows(self, count, settle_secs=2.0, timeout_secs=90):
        return [json.loads(m.data) for m in self.emulator.pull(
            self.names["predictions"], count, timeout_secs, settle_secs)]

    def dead(self, count, settle_secs=0.0, timeout_secs=60):
        return [json.loads(m.data) for m in self.emulator.pull(
            self.names["dead_letters"], count, timeout_secs, settle_secs)]


@contextlib.contextmanager
def running(args):
    """The entry point started in this process (--no-wait), cancelled at the end (without
    waiting for the Pub/Sub pull in flight)."""
    result = streaming.run(args + ["--no-wait"])
    try:
        yield result
    finally:
        streaming.cancel(result, timeout_secs=0)


def _config_file(folder: Path, config: InferenceConfig) -> str:
    path = folder / "inference.json"
    path.write_text(config.to_json())
    return str(path)


def _models(folder: Path, keys=None) -> InferenceConfig:
    """Two TorchScript models, "one" (outputs 1.0) and "two" (2.0), on feature x."""
    return InferenceConfig(
        routing="keyed" if keys else "ab", routing_feature="group" if keys else "request",
        models=[ModelConfig(name=name, uri=_save(Constant(value), folder / f"{name}.pt"),
                            inputs=InputSpec(features=["x"]), max_batch_size=16,
                            keys=[keys[i]] if keys else [])
                for i, (name, value) in enumerate((("one", 1.0), ("two", 2.0)))])


def test_ab_routing_on_json_and_example_messages_with_request_ids(emulator, tmp_path):
    """JSON and tf.Example messages under A/B routing: each message's row carries its
    request_id attribute and its model's output; a message that is neither, and one whose
    attribute clashes with a feature, are dead letters with their reason and request id."""
    topics = Topics(emulator)
    config = _models(tmp_path)
    n = 30
    messages = [json.dumps({"x": float(i), "request": i}).encode() if i % 2 else
                helpers.example({"x": [float(i)], "request": [i]}) for i in range(n)]
    messages += [b"{not json", json.dumps({"x": 1.0, "request_id": "a"}).encode()]
    ids = [{"request_id": f"r-{i}"} for i in range(len(messages))]
    emulator.publish(topics.requests, messages, ids)
    with running(topics.args() + ["--inference_config", _config_file(tmp_path, config),
                                  "--attributes_to_row", "request_id", "--window_secs", "5",
                                  "--id_attribute", "request_id"]):
        rows = topics.rows(n)
        dead = topics.dead(2)
    assert sorted(row["request_id"] for row in rows) == sorted(f"r-{i}" for i in range(n))
    assert {row["model"] for row in rows} == {"one", "two"}
    for row in rows:
        i = int(row["request_id"][2:])
        assert row["x"] == float(i)
        assert row["output_0"] == {"one": 1.0, "two": 2.0}[row["model"]]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", row["event_time"])
    by_source = {d["source"].split(" ", 2)[-1]: d for d in dead}
    assert {(d["stage"], d["error_type"]) for d in dead} == {("parse", "MessageError")}
    assert "not valid JSON" in by_source['{"request_id": "r-30"}']["message"]
    assert "also features of the message" in by_source['{"request_id": "r-31"}']["message"]


def test_a_model_swapped_while_messages_flow(emulator, tmp_path, caplog):
    """`--model_pattern` on the local runner: messages published before a new model file
    appears are scored by the old version, those after the next check by the new one; a
    version that cannot load (a half-written file) is logged once and the one before
    serves. No message is lost or scored twice, none is a dead letter."""
    topics = Topics(emulator)
    folder = tmp_path / "models"
    folder.mkdir()
    v1 = _save(Constant(1.0), folder / "model-v1.pt")
    os.utime(v1, (time.time() - 60,) * 2)
    config = InferenceConfig(models=[ModelConfig(name="clf", uri=v1,
                                                 inputs=InputSpec(features=["x"]))])
    check_secs = 1.0
    n = 20

    def publish_and_pull(step: int) -> list:
        emulator.publish(topics.requests, [json.dumps({"x": float(step * n + i)}).encode()
                                           for i in range(n)])
        return topics.rows(n, settle_secs=0.5)

    with caplog.at_level(logging.INFO), running(topics.args() + [
            "--inference_config", _config_file(tmp_path, config), "--model_pattern",
            str(folder / "*.pt"), "--model_check_secs", str(check_secs)]):
        before = publish_and_pull(0)
        _save(Constant(2.0), folder / "model-v2.pt")
        time.sleep(check_secs * 1.5)
        after = publish_and_pull(1)
        (folder / "model-v3.pt").write_bytes(b"half an upload")
        time.sleep(check_secs * 1.5)
        broken = publish_and_pull(2)
        dead = topics.dead(1, timeout_secs=3)
    for step, rows, output in ((0, before, 1.0), (1, after, 2.0), (2, broken, 2.0)):
        assert sorted(row["x"] for row in rows) == [float(step * n + i) for i in range(n)]
        assert {row["output_0"] for row in rows} == {output}, step
    assert dead == []
    failed = [r.getMessage() for r in caplog.records if "could not be loaded" in
              r.getMessage()]
    assert len(failed) == 1 and "model-v3.pt" in failed[0]


def _request_id(dead_letter) -> str:
    """The request_id a dead letter's record carries (--attributes_to_row)."""
    record = base64.b64decode(dead_letter["record_base64"])
    return examples.first_value(record, "request_id")


def _readme_blocks():
    """The README's bash blocks that talk to the Pub/Sub emulator, as lists of commands."""
    from tests.runners.test_readme import readme_blocks
    return [b for b in readme_blocks() if any("PUBSUB_EMULATOR_HOST" in c for c in b)]


def test_the_readme_commands_score_requests_and_stop_on_ctrl_c(emulator, tmp_path):
    """The README's emulator blocks as printed (the emulator's port aside, and without the
    `gcloud` line: the test runs its own emulator), with an inference.json under keyed
    routing: the request it publishes comes back as a row with its request_id; a message
    no model serves is a dead letter (routing); Ctrl-C (SIGINT) stops the pipeline."""
    serve, request = _readme_blocks()
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / ".venv").symlink_to(REPO / ".venv")
    _config_file(folder, _models(tmp_path, keys=["a", "b"]))
    emulator.topic("dead-letters")  # with a subscription, to read them (the script's PUT: 409)

    def script(commands):
        return "\n".join(c.replace("127.0.0.1:8685", emulator.host) for c in commands
                         if not c.startswith("gcloud "))

    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = folder / "streaming.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["bash", "-e", "-c", script(serve)], cwd=folder, env=env,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        emulator.wait_for_subscription("requests")  # made by the script
        emulator.publish(f"projects/{pubsub_emulator.PROJECT}/topics/requests",
                         [b'{"x": 2.0, "group": "b"}', b'{"x": 3.0, "group": "z"}'],
                         [{"request_id": "warm-up"}, {"request_id": "nobody"}])
        first = [json.loads(m.data) for m in emulator.pull("predictions", 1, 120)]
        assert [(r["request_id"], r["model"], r["output_0"]) for r in first] == [
            ("warm-up", "two", 2.0)], log.read_text()[-3000:]
        pulled = subprocess.run(["bash", "-e", "-c", script(request)], cwd=folder, env=env,
                                capture_output=True, text=True, timeout=60, check=True)
        rows = [json.loads(base64.b64decode(m["message"]["data"]))
                for m in json.loads(pulled.stdout.split("\n}\n", 1)[1])["receivedMessages"]]
        assert [(r["request_id"], r["model"], r["output_0"], r["x"]) for r in rows] == [
            ("r-1", "one", 1.0, 1.5)]
        dead = [json.loads(m.data) for m in emulator.pull("dead-letters", 1, 30)]
        assert [(d["stage"], _request_id(d)) for d in dead] == [("routing", "nobody")]
        assert process.poll() is None, log.read_text()[-3000:]
        started = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert time.monotonic() - started < streaming.STOP_TIMEOUT_SECS + 10
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_id_attribute_is_pubsubs_id_label_on_dataflow_and_left_out_locally():
    """--id_attribute de-duplicates on Dataflow (Pub/Sub's id_label); Beam's DirectRunner
    refuses id_label, so locally the read goes without it (a warning says duplicates are
    scored again: the A/B test runs with it)."""
    args, _ = streaming.parse_args([
        "--input_subscription", "projects/my-project/subscriptions/requests",
        "--output_topic", "projects/my-project/topics/predictions", "--inference_config",
        "c.json", "--id_attribute",
        "request_id"])
    assert streaming.pubsub_source(args, dedupes=True)._source.id_label == "request_id"
    assert streaming.pubsub_source(args, dedupes=False)._source.id_label is None
