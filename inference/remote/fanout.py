"""A batch of a remote model, sent as requests side by side.

Beam runs one batch at a time per DoFn thread, and a remote model's time is mostly
waiting for answers, so the engine's batch for a remote model holds up to
`max_in_flight` requests' worth of records: it is split here into requests of at most
`request_size` records, sent at once from a pool of `max_in_flight` threads per worker
process (so each worker has at most that many requests in flight, however many DoFn
threads it runs), each through a handler copy of its own: Beam's throttler judges one
request at a time. A request that still fails after Beam's retries fails its own records
only; the others keep their predictions.
"""
import math
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from inference import columns, metrics
from inference.frameworks import PartialPredictions
from inference.remote import protocols
from inference.remote.handlers import RemoteInferenceError
from inference.remote.options import RemoteOptions

_POOLS: Dict[Tuple[str, str, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(model_name: str, url: str, size: int) -> ThreadPoolExecutor:
    """The worker process's request threads for one remote model."""
    key = (model_name, url, size)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ThreadPoolExecutor(size,
                                                    thread_name_prefix=f"remote-{model_name}")
    return pool


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
    """The records of a remote model's batch: a full request for each slot in flight."""
    return options.request_size * options.max_in_flight


class RemoteModel:
    """A remote model as a worker holds it: Beam's handler for it (see `handlers`) and the
    client the handler made. `predict` sends a batch as requests side by side."""

    def __init__(self, handler, options: RemoteOptions, model_name: str):
        self._handler = handler
        self._options = options
        self._model_name = model_name
        self._client = handler.load_model()
        self._slots: queue.Queue = queue.Queue()
        for _ in range(options.max_in_flight):
            self._slots.put(handler.for_another_slot())

    def _send(self, inputs, inference_args):
        """One request, through a free slot's handler (each has its own throttler)."""
        handler = self._slots.get()
        try:
            return handler.run_inference(inputs, self._client, inference_args)
        finally:
            self._slots.put(handler)

    def predict(self, inputs: protocols.Inputs,
                inference_args: Optional[Dict[str, Any]] = None) -> Dict[str, np.ndarray]:
        """{output name: array} for the batch; PartialPredictions when some requests
        failed after their retries (their rows fail, the others keep their outputs)."""
        tally = self._handler.tally
        pool = _pool(self._model_name, self._options.url, self._options.max_in_flight)
        bounds = request_bounds(protocols.rows(inputs), self._options.request_size)
        futures = [pool.submit(self._send, _take(inputs, a, b), inference_args)
                   for a, b in bounds]
        answered: List[Dict[str, np.ndarray]] = []
        errors: Dict[int, Exception] = {}
        for (start, end), future in zip(bounds, futures):
            try:
                answered.append(future.result())
            except Exception as e:  # pylint: disable=broad-except  (the rows' dead letters)
                error = e if isinstance(e, RemoteInferenceError) else RemoteInferenceError(
                    f"{type(e).__name__}: {e}")
                errors.update((row, error) for row in range(start, end))
        latencies, throttled = tally.drain()
        failed = len({id(e) for e in errors.values()})
        metrics.record_requests(self._model_name, len(latencies),
                                max(0, len(latencies) - len(bounds)), failed, latencies,
                                throttled)
        outputs = columns.concatenate(answered)
        if errors:
            raise PartialPredictions(outputs, errors)
        return outputs
