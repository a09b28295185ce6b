"""Dead letters published to Pub/Sub by the steps that make them.

Beam's `WriteToPubSub` is the sink for the stream of rows (Dataflow replaces it with its
own). It is not the dead letters' sink because of how Beam's DirectRunner runs a step: once
for every bundle of its input, empty or not, setting its DoFn up again each time (and
WriteToPubSub's writer opens a new Pub/Sub client in its setup). A dead-letter stream is
empty in nearly every bundle, and each step of it would cost every bundle, so the steps
that make dead letters publish them (`PublishDeadLetters`), through one client per
process, opened when the first dead letter comes.
"""
import threading
from typing import Any, Callable

from inference.data.failures import Failure
from inference.io.dead_letters import DeadLetters

PUBLISH_TIMEOUT_SECS = 300  # as long as WriteToPubSub waits for its publishes

_publisher = None
_lock = threading.Lock()


def _client():
    """The process's Pub/Sub publisher (PUBSUB_EMULATOR_HOST is honoured)."""
    global _publisher
    with _lock:
        if _publisher is None:
            from google.cloud import pubsub_v1
            _publisher = pubsub_v1.PublisherClient()
        return _publisher


class PublishDeadLetters(DeadLetters):
    """Counts each Failure, encodes it (`encoder(failure)` -> the message's bytes) and
    publishes it to `topic` ("projects/<project>/topics/<name>"); a bundle ends once
    Pub/Sub has its dead letters (`finish`)."""

    def __init__(self, encoder: Callable[[Failure], bytes], topic: str):
        super().__init__(encoder)
        self._topic = topic
        self._pending = []

    def __getstate__(self):
        return {**super().__getstate__(), "_pending": []}

    def __call__(self, failure: Failure) -> Any:
        self._pending.append(_client().publish(self._topic, super().__call__(failure)))

    def finish(self):
        pending, self._pending = self._pending, []
        for future in pending:
            future.result(timeout=PUBLISH_TIMEOUT_SECS)
