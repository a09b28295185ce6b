"""A batch of a remote model, sent as requests side by side, each retried on its own.

Beam runs one batch at a time per DoFn thread, and a remote model's time is mostly
waiting for answers, so the engine's batch for a remote model holds several requests
(`batch_size`) of at most `request_size` records for each of `max_in_flight` slots, sent
by `max_in_flight` threads (at most that many attempts are on the wire at once per worker
process). A request waiting out its backoff (`backoff`) holds no thread, and goes before
the batch's requests not yet sent once its wait is over, so that its retry does not land
at the end of the batch. A failed request is retried up to `max_retries` times, and for
as long as the endpoint is unavailable (no answer, 502, 503, 504) until the model's
circuit breaker (`breaker`) opens; then every request fails at once. A request that
still fails fails its own records only; the others keep their predictions.
"""
import collections
import heapq
import math
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from inference.data import columns
from inference.data.results import PartialPredictions
from inference.observe import metrics
from inference.remote import backoff, protocols
from inference.remote.breaker import CircuitBreaker, EndpointDown
from inference.remote.handlers import RemoteInferenceError, overloaded, retryable, unavailable
from inference.remote.options import RemoteOptions

# Requests per slot in a batch: enough that a request waiting out its backoff at the end
# of a batch holds up a small part of it; fewer where the batch would pass BATCH_RECORDS.
REQUESTS_PER_SLOT = 16
BATCH_RECORDS = 8192
# Requests in a row that failed after their retries before the circuit opens.
FAILED_REQUESTS_TO_OPEN = 5
# How often a thread waiting for a request's backoff looks whether the circuit opened.
_POLL_SECS = 0.5

def request_bounds(batch: int, request_size: int) -> List[Tuple[int, int]]:
    """[start, end) of each request: as few as fit `request_size`, of near-equal size."""
    count = max(1, math.ceil(batch / request_size))
    edges = np.linspace(0, batch, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _take(inputs: protocols.Inputs, start: int, end: int) -> protocols.Inputs:
    if isinstance(inputs, dict):
        return {name: values[start:end] for name, values in inputs.items()}
    return inputs[start:end]


def batch_size(options: RemoteOptions) -> int:
    """The records of a remote model's batch: REQUESTS_PER_SLOT full requests per slot,
    fewer (one at least) where that would pass BATCH_RECORDS."""
    per_round = options.request_size * options.max_in_flight
    return per_round * max(1, min(REQUESTS_PER_SLOT, BATCH_RECORDS // per_round))


class _Request:
    """One request of a batch: its rows, its attempts so far, and its outcome."""

    def __init__(self, start: int, end: int, inputs):
        self.start, self.end, self.inputs = start, end, inputs
        self.attempts = 0
        self.failing_since: Optional[float] = None
        self.outputs: Optional[Dict[str, np.ndarray]] = None
        self.error: Optional[RemoteInferenceError] = None


class RemoteModel:
    """A remote model as a worker holds it: Beam's handler for it (see `handlers`), the
    client the handler made, and the endpoint's circuit breaker. `predict` sends a batch
    as requests side by side.

    probe: the breaker's check that the endpoint answers (None: a request is the probe).
    """

    def __init__(self, handler, options: RemoteOptions, model_name: str, probe=None):
        self._handler = handler
        self._options = options
        self._model_name = model_name
        self._client = handler.load_model()
        self._slots = threading.BoundedSemaphore(options.max_in_flight)
        self.breaker = CircuitBreaker(
            options.url, options.outage_secs, options.probe_interval_secs,
            FAILED_REQUESTS_TO_OPEN, probe and (lambda: probe(self._client)))

    def _attempt(self, request: _Request, inference_args) -> Optional[float]:
        """Sends `request` once, in a free slot, through Beam's handler (and its
        throttler). Returns the seconds to wait before the next attempt, or None when the
        request is done (its outputs or its error set)."""
        breaker = self.breaker
        if not breaker.admit():
            request.error = breaker.down_error(request.error)
            return None
        request.attempts += 1
        try:
            with self._slots:
                sent_at = breaker.now()
                try:
                    request.outputs = self._handler.run_inference(
                        request.inputs, self._client, inference_args)
                finally:
                    self._handler.throttler.ended(succeeded=request.outputs is not None)
        except RemoteInferenceError as error:
            request.error = error
            return self._retry_in(request, error, sent_at)
        except Exception as e:  # the rows' dead letters
            request.error = RemoteInferenceError(f"{type(e).__name__}: {e}")
            return None
        request.error = None
        breaker.succeeded(sent_at)
        return None

    def _retry_in(self, request: _Request, error: RemoteInferenceError,
                  sent_at: float) -> Optional[float]:
        """The wait before `request`'s next attempt after `error`; None: it is done. A
        server that answers (429, 500) is alive: it keeps the circuit closed. The endpoint
        unavailable (no answer, 502-504) counts toward the circuit's outage, and the
        request is retried beyond max_retries until it opens or until this request has
        failed for outage_secs."""
        breaker, now = self.breaker, time.monotonic()
        if not retryable(error):
            breaker.succeeded(sent_at)
            return None
        if request.failing_since is None:
            request.failing_since = now
        down = unavailable(error)
        if down:
            breaker.failed(error, sent_at)
            if breaker.is_open:
                request.error = breaker.down_error(error)
                return None
        spent = request.attempts > self._options.max_retries
        if spent and not (down and now - request.failing_since < self._options.outage_secs):
            if error.status != 429:
                breaker.gave_up()
            return None
        self._handler.tally.retry()
        return backoff.delay(request.attempts - 1, error.retry_after, overloaded(error))

    def _send(self, requests: List[_Request], inference_args):
        """Sends `requests` from up to `max_in_flight` threads. A request to retry waits
        out its backoff off the threads, and goes first once its wait is over."""
        ready = collections.deque(requests)
        waiting: List[Tuple[float, int, _Request]] = []  # (when, tie-break, request)
        changed = threading.Condition()

        def work():
            while True:
                with changed:
                    while True:
                        now = time.monotonic()
                        while waiting and (waiting[0][0] <= now or self.breaker.is_open):
                            ready.appendleft(heapq.heappop(waiting)[2])
                        if ready:
                            request = ready.popleft()
                            break
                        if not waiting:
                            return  # the rest is in flight on other threads
                        changed.wait(min(waiting[0][0] - now, _POLL_SECS))
                wait = self._attempt(request, inference_args)
                if wait is not None:
                    with changed:
                        heapq.heappush(waiting, (time.monotonic() + wait, id(request),
                                                 request))
                        changed.notify()

        threads = [threading.Thread(target=work, name=f"remote-{self._model_name}",
                                    daemon=True)
                   for _ in range(min(self._options.max_in_flight, len(requests)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def predict(self, inputs: protocols.Inputs,
                inference_args: Optional[Dict[str, Any]] = None) -> Dict[str, np.ndarray]:
        """{output name: array} for the batch; PartialPredictions when some requests
        failed (their rows fail, the others keep their outputs)."""
        requests = [_Request(a, b, _take(inputs, a, b)) for a, b in
                    request_bounds(protocols.rows(inputs), self._options.request_size)]
        self._send(requests, inference_args)
        errors: Dict[int, Exception] = {}
        failed = while_down = 0
        for request in requests:
            if request.outputs is None and request.error is None:  # a thread that broke
                request.error = RemoteInferenceError("the request was not completed")
            if request.error is None:
                continue
            errors.update((row, request.error) for row in range(request.start, request.end))
            if isinstance(request.error, EndpointDown):
                while_down += request.end - request.start
            else:
                failed += 1
        latencies, throttled, retries = self._handler.tally.drain()
        metrics.record_requests(self._model_name, len(latencies), retries, failed,
                                latencies, throttled)
        metrics.record_circuit(self._model_name, self.breaker.drain_open_seconds(),
                               while_down)
        outputs = columns.concatenate([r.outputs for r in requests if r.error is None])
        if errors:
            raise PartialPredictions(outputs, errors)
        return outputs
