"""Google's Pub/Sub emulator (`gcloud beta emulators pubsub start`) on a free loopback port,
for the streaming tests and benchmark, with the few client calls they make.

Clients find it through `PUBSUB_EMULATOR_HOST` (see `env`); `Unavailable` says why it
cannot run here (no gcloud, no emulator component or Java, or it did not start in time).
"""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

from tests import processes
from tests.processes import free_port
from tests.venvs import Unavailable

PROJECT = "demo-proj"
START_TIMEOUT_SECS = 60


class Received(NamedTuple):
    """A pulled message, and when it arrived (time.time())."""
    data: bytes
    attributes: Dict[str, str]
    arrived: float


class PubSubEmulator:
    """The emulator in a process group of its own; `start()` / `stop()` or a `with` block."""

    def __init__(self, folder: Optional[Path] = None):
        self.port = free_port()
        self.folder = Path(folder or tempfile.mkdtemp(prefix="pubsub-emulator-"))
        self.log = self.folder / "emulator.log"
        self.process: Optional[subprocess.Popen] = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> Dict[str, str]:
        """What a client's environment needs to talk to this emulator."""
        return {"PUBSUB_EMULATOR_HOST": self.host, "PUBSUB_PROJECT_ID": PROJECT}

    def start(self) -> "PubSubEmulator":
        gcloud = shutil.which("gcloud")
        if not gcloud:
            raise Unavailable("gcloud is not installed (the emulator is the "
                              "google-cloud-cli-pubsub-emulator package)")
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={self.host}",
                 f"--project={PROJECT}", f"--data-dir={self.folder / 'data'}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(f"the Pub/Sub emulator exited ({self.process.returncode}): "
                                  f"{self.log.read_text()[-2000:]}")
            if f"listening on {self.port}" in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        self.stop()
        raise Unavailable(f"the Pub/Sub emulator did not start within {START_TIMEOUT_SECS} s: "
                          f"{self.log.read_text()[-2000:]}")

    def stop(self):
        processes.signal_group(self.process)  # gcloud and the Java server it runs

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- clients -------------------------------------------------------------------------

    def _clients(self):
        os.environ.update(self.env)  # the Pub/Sub clients read it as they are made
        from google.cloud import pubsub_v1
        return pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()

    def topic(self, name: str, subscribe: bool = True) -> str:
        """Creates topic `name` (and subscription `name`, to read it); returns its path."""
        publisher, subscriber = self._clients()
        topic = publisher.topic_path(PROJECT, name)
        publisher.create_topic(name=topic)
        if subscribe:
            subscriber.create_subscription(name=self.subscription(name), topic=topic,
                                           ack_deadline_seconds=60)
        return topic

    def wait_for_subscription(self, name: str, timeout_secs: float = 60):
        """Returns once subscription `name` exists (made by someone else)."""
        _, subscriber = self._clients()
        deadline = time.monotonic() + timeout_secs
        while True:
            try:
                subscriber.get_subscription(subscription=self.subscription(name))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @staticmethod
    def subscription(name: str) -> str:
        return f"projects/{PROJECT}/subscriptions/{name}"

    def publish(self, topic: str, messages: Sequence[bytes],
                attributes: Optional[Sequence[Mapping[str, str]]] = None) -> List[float]:
        """Publishes `messages` in order (with their attributes); returns when each was
        acknowledged by the emulator (time.time())."""
        publisher, _ = self._clients()
        futures = [publisher.publish(topic, data, **(attributes[i] if attributes else {}))
                   for i, data in enumerate(messages)]
        for future in futures:
            future.result(timeout=60)
        now = time.time()
        return [now] * len(futures)

    def pull(self, name: str, count: int, timeout_secs: float = 60,
             settle_secs: float = 0.0) -> List[Received]:
        """Pulls (and acks) subscription `name` until `count` messages came, `timeout_secs`
        passed, or, after `count`, `settle_secs` more passed without another (to see
        extras)."""
        _, subscriber = self._clients()
        path = self.subscription(name)
        got: List[Received] = []
        deadline = time.monotonic() + timeout_secs
        quiet_since = None
        while time.monotonic() < deadline:
            if len(got) >= count:
                if quiet_since is None:
                    quiet_since = time.monotonic()
                if time.monotonic() - quiet_since >= settle_secs:
                    break
            try:
                response = subscriber.pull(subscription=path, max_messages=1000, timeout=5)
            except Exception:
                response = None  # the emulator answers an empty pull with DEADLINE_EXCEEDED
            received = response.received_messages if response else []
            if not received:
                time.sleep(0.05)
                continue
            now = time.time()
            subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in received])
            got += [Received(m.message.data, dict(m.message.attributes), now)
                    for m in received]
            quiet_since = None
        return got
