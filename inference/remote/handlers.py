"""Beam `RemoteModelHandler`s for remote models: one attempt per call of `request`, which
Beam wraps in client-side throttling (its `ReactiveThrottler`). Retries are the engine's
(see `fanout` and `backoff`): Beam's start at 5 s and hold the whole call.

`request` takes a batch's model inputs as the engine decodes them (a stacked
[batch, width] array, or a dict of such arrays) and returns batch-major outputs
({output name: array}). Each request's latency, and the seconds Beam's throttler held
requests back, go to a `RequestTally`: requests are sent from a thread pool (see
`fanout`), where Beam's metrics do not count, so the thread running the DoFn reports them.
"""
import json
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import requests
from apache_beam.io.components.adaptive_throttler import ReactiveThrottler
from apache_beam.ml.inference.base import RemoteModelHandler
from requests.adapters import HTTPAdapter

from inference.remote import backoff, protocols
from inference.remote.options import RemoteOptions, read_secret_file

# Statuses worth another attempt: quota (429) and server errors (5xx); 0 is no answer
# (a refused or dropped connection, a timeout).
_RETRYABLE = (0, 429)
# Of those, the ones that say the endpoint is not there (rather than a live server's
# error): retried until the circuit opens, whatever max_retries says.
_UNAVAILABLE = (0, 502, 503, 504)
# A probe's own time limit (seconds), below a slow model's request timeout.
PROBE_TIMEOUT_SECS = 10.0


class RemoteInferenceError(Exception):
    """A request that failed. status: the HTTP status, 0 when no answer came; retry_after:
    the seconds the server asked the client to wait (`Retry-After`), if it did. The message
    holds the status, the URL and the server's own message, never a credential."""

    def __init__(self, message: str, status: int = 0, retry_after: Optional[float] = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def retryable(error: Exception) -> bool:
    """429, 5xx and no answer are retried; other errors are not."""
    return isinstance(error, RemoteInferenceError) and (
        error.status in _RETRYABLE or error.status >= 500)


def overloaded(error: Exception) -> bool:
    """429, or the endpoint unavailable: backing off helps."""
    return unavailable(error) or getattr(error, "status", None) == 429


def unavailable(error: Exception) -> bool:
    """No answer, 502, 503 or 504: the endpoint is not there (for now)."""
    return isinstance(error, RemoteInferenceError) and error.status in _UNAVAILABLE


class RequestTally:
    """Request figures gathered by the threads that send requests, until `drain`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latencies_ms: List[float] = []
        self._throttled_seconds = 0
        self._retries = 0

    def attempt(self, milliseconds: float):
        with self._lock:
            self._latencies_ms.append(milliseconds)

    def retry(self):
        with self._lock:
            self._retries += 1

    def signal_throttled(self, seconds: int):
        """What Beam's ReactiveThrottler calls each time it holds a request back."""
        with self._lock:
            self._throttled_seconds += seconds

    def drain(self) -> Tuple[List[float], int, int]:
        """(each attempt's latency in ms, seconds throttled, retries) since the last
        drain."""
        with self._lock:
            drained = self._latencies_ms, self._throttled_seconds, self._retries
            self._latencies_ms, self._throttled_seconds, self._retries = [], 0, 0
        return drained


class SharedThrottler(ReactiveThrottler):
    """Beam's ReactiveThrottler (the SRE book's client-side throttling: requests are held
    back, `throttle_delay_secs` at a time, with a chance that grows once attempts exceed
    `overload_ratio` times the successes over the window), shared by all of a model's
    requests in flight, counting an attempt when it ends (`ended`), and judging only from
    MIN_ATTEMPTS attempts in the window at least: client-side throttling is for clients
    that send many requests a second (an endpoint that is down is the circuit breaker's).
    Beam's counts an attempt when it starts and its success when it ends, so requests in
    flight at once would throttle each other though none failed; and from a handful of
    attempts, a few failures (the first answers of a run, a server's 429 with its own
    `Retry-After`) would hold every request back for seconds."""

    MIN_ATTEMPTS = 20

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def throttle_request(self, now):
        with self._lock:
            if self._all_requests.sum(now) < self.MIN_ATTEMPTS:
                return False
            return self._random.uniform(0, 1) < self._throttling_probability(now)

    def successful_request(self, now):
        """Beam's call after a successful attempt (counted in `ended`)."""

    def ended(self, succeeded: bool):
        """Counts an attempt that just ended."""
        now = time.time() * 1000
        with self._lock:
            self._all_requests.add(now, 1)
            if succeeded:
                self._successful_requests.add(now, 1)


class _Tallied:
    """Gives a RemoteModelHandler a SharedThrottler, and a RequestTally (made where it
    runs: locks do not pickle) that also receives the throttler's signals."""

    def _share_throttler(self, options: RemoteOptions):
        self.throttler = SharedThrottler(
            window_ms=options.throttle_window_secs * 1000, bucket_ms=1000,
            overload_ratio=options.overload_ratio, namespace=self.throttler.logger.name,
            throttle_delay_secs=options.throttle_delay_secs)

    @property
    def tally(self) -> RequestTally:
        tally = self.__dict__.get("_tally")
        if tally is None:
            tally = self.__dict__["_tally"] = RequestTally()
            self.throttler.throttling_signaler = tally
        return tally

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_tally"}

    def _timed(self, send, *args):
        started = time.perf_counter()
        try:
            return send(*args)
        finally:
            self.tally.attempt((time.perf_counter() - started) * 1000)


def beam_kwargs(options: RemoteOptions) -> Dict[str, Any]:
    """RemoteModelHandler's throttling arguments (see also `SharedThrottler`), and no
    retries of its own."""
    return {"num_retries": 0,
            "throttle_delay_secs": options.throttle_delay_secs,
            "window_ms": options.throttle_window_secs * 1000, "bucket_ms": 1000,
            "overload_ratio": options.overload_ratio}


class HttpModelHandler(_Tallied, RemoteModelHandler):
    """A model behind a REST model server (Open Inference Protocol V2, TF Serving)."""

    def __init__(self, options: RemoteOptions, protocol: protocols.Protocol,
                 namespace: str):
        super().__init__(namespace=namespace, **beam_kwargs(options))
        self._share_throttler(options)
        self._options = options
        self._protocol = protocol
        self._infer_url = protocol.infer_url(options.url)

    def create_client(self) -> requests.Session:
        session = requests.Session()
        # One connection per request in flight, kept open between batches.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._options.max_in_flight)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        token = self._options.token()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        return session

    def request(self, batch: protocols.Inputs, model: requests.Session,
                inference_args: Optional[Dict[str, Any]] = None) -> Dict[str, np.ndarray]:
        body = self._protocol.body(batch, inference_args)
        response = self._timed(self._post, model, body)
        try:
            return self._protocol.outputs(response.json(), protocols.rows(batch))
        except (ValueError, protocols.ProtocolError) as e:
            raise RemoteInferenceError(f"unreadable answer from POST {self._infer_url}: {e}",
                                       response.status_code) from None

    def _post(self, session: requests.Session, body: Dict[str, Any]) -> requests.Response:
        try:
            response = session.post(self._infer_url, json=body,
                                    timeout=self._options.timeout_secs)
        except requests.Timeout:
            raise RemoteInferenceError(f"no answer from POST {self._infer_url} within "
                                       f"{self._options.timeout_secs} s") from None
        except requests.RequestException as e:
            raise RemoteInferenceError(f"no answer from POST {self._infer_url}: "
                                       f"{root_cause(e)}") from None
        if response.status_code != 200:
            retry_after = (backoff.parse_retry_after(response.headers.get("Retry-After"))
                           if response.status_code in (429, 503) else None)
            raise RemoteInferenceError(
                f"HTTP {response.status_code} {response.reason} from POST "
                f"{self._infer_url}: {server_message(response)}", response.status_code,
                retry_after)
        return response

    def ready(self, session: requests.Session) -> bool:
        """Whether the model's uri answers 200 (its metadata or status): the circuit
        breaker's probe."""
        try:
            return session.get(self._options.url, timeout=min(
                self._options.timeout_secs, PROBE_TIMEOUT_SECS)).status_code == 200
        except requests.RequestException:
            return False


def root_cause(error: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, e.g. 'ConnectionRefusedError:
    [Errno 111] Connection refused'."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    reason = getattr(error, "reason", None)  # urllib3's MaxRetryError wraps its reason
    if isinstance(reason, BaseException):
        return root_cause(reason)
    return f"{type(error).__name__}: {error}"


def server_message(response: requests.Response, limit: int = 300) -> str:
    """The server's own message: its JSON `error` field (MLServer, KServe, TF Serving),
    else the start of the body, on one line."""
    text = response.text
    try:
        content = json.loads(text)
        if isinstance(content, Mapping) and content.get("error"):
            text = str(content["error"])
    except ValueError:
        pass
    text = " ".join(text.split())
    return (text[:limit] + "...") if len(text) > limit else (text or "(no message)")


def _vertex_handler_class():
    """Beam's Vertex AI handler, subclassed; imported only for Vertex AI models
    (google-cloud-aiplatform takes seconds to import)."""
    from apache_beam.ml.inference.vertex_ai_inference import VertexAIModelHandlerJSON
    from google.api_core import exceptions as google_exceptions

    class VertexModelHandler(_Tallied, VertexAIModelHandlerJSON):
        """Beam's VertexAIModelHandlerJSON, with credentials from a key file when the
        options name one, and the engine's inputs and outputs: row-format instances
        out, {output name: array} back."""

        def __init__(self, options: RemoteOptions, output_names=()):
            target = options.target
            init_aiplatform(options)
            super().__init__(endpoint_id=target["endpoint_id"], project=target["project"],
                             location=target["region"], network=options.network or None,
                             private=options.private, **beam_kwargs(options))
            self._share_throttler(options)
            self._options = options
            self._output_names = tuple(output_names)

        def create_client(self):
            init_aiplatform(self._options)
            return super().create_client()

        def request(self, batch, model, inference_args=None):
            try:
                results = self._timed(super().request, protocols.instances(batch), model,
                                      inference_args)
            except google_exceptions.GoogleAPICallError as e:
                raise RemoteInferenceError(f"{type(e).__name__} from Vertex AI endpoint "
                                           f"{self._options.url}: {e.message}",
                                           int(e.code or 0)) from None
            except google_exceptions.RetryError as e:
                raise RemoteInferenceError(f"no answer from Vertex AI endpoint "
                                           f"{self._options.url}: {e.message}") from None
            return protocols.predictions_outputs([r.inference for r in results],
                                                 protocols.rows(batch), self._output_names)

    return VertexModelHandler


def vertex_handler(options: RemoteOptions, output_names=()):
    """Beam's Vertex AI handler for the endpoint `options.url` names. Beam checks, as it is
    built, that the endpoint exists and serves a model."""
    return _vertex_handler_class()(options, output_names)


def init_aiplatform(options: RemoteOptions):
    """Sets the Vertex AI SDK's credentials (from `credentials_file`; else Application
    Default Credentials) and API endpoint, where the options give them."""
    from google.cloud import aiplatform
    kwargs: Dict[str, Any] = {}
    if options.credentials_file:
        from google.oauth2 import service_account
        try:
            info = json.loads(read_secret_file(options.credentials_file))
            kwargs["credentials"] = service_account.Credentials.from_service_account_info(
                info, scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except (ValueError, KeyError) as e:
            raise ValueError(f"options.credentials_file {options.credentials_file!r} is not "
                             f"a service account key file ({type(e).__name__})") from None
    if options.api_endpoint:
        kwargs["api_endpoint"] = options.api_endpoint
        if options.api_endpoint.startswith(("http://", "https://")):
            kwargs["api_transport"] = "rest"
    if kwargs:
        aiplatform.init(**kwargs)
