"""Beam `RemoteModelHandler`s for remote models: one request per call of `request`,
which Beam wraps in client-side throttling and retries with exponential backoff.

`request` takes a batch's model inputs as the engine decodes them (a stacked
[batch, width] array, or a dict of such arrays) and returns batch-major outputs
({output name: array}). Each request's latency, and the seconds Beam's throttler held
requests back, go to a `RequestTally`: requests are sent from a thread pool (see
`fanout`), where Beam's metrics do not count, so the thread running the DoFn reports them.
"""
import copy
import json
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import requests
from apache_beam.io.components.adaptive_throttler import ReactiveThrottler
from apache_beam.ml.inference.base import RemoteModelHandler
from requests.adapters import HTTPAdapter

from inference.remote import protocols
from inference.remote.options import RemoteOptions, read_secret_file

# Statuses worth another attempt: quota (429) and server errors (5xx); 0 is no answer
# (a refused or dropped connection, a timeout).
_RETRYABLE = (0, 429)


class RemoteInferenceError(Exception):
    """A request that failed. status: the HTTP status, 0 when no answer came. The message
    holds the status, the URL and the server's own message, never a credential."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def retryable(error: Exception) -> bool:
    """Beam's retry filter: 429, 5xx and no answer are retried; other errors are not."""
    return isinstance(error, RemoteInferenceError) and (
        error.status in _RETRYABLE or error.status >= 500)


class RequestTally:
    """Request figures gathered by the threads that send requests, until `drain`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latencies_ms: List[float] = []
        self._throttled_seconds = 0

    def attempt(self, milliseconds: float):
        with self._lock:
            self._latencies_ms.append(milliseconds)

    def signal_throttled(self, seconds: int):
        """What Beam's ReactiveThrottler calls each time it holds a request back."""
        with self._lock:
            self._throttled_seconds += seconds

    def drain(self) -> Tuple[List[float], int]:
        """(each attempt's latency in ms, seconds throttled) since the last drain."""
        with self._lock:
            drained = self._latencies_ms, self._throttled_seconds
            self._latencies_ms, self._throttled_seconds = [], 0
        return drained


class _Tallied:
    """Gives a RemoteModelHandler a RequestTally (made where it runs: locks do not pickle)
    that also receives Beam's throttling signals, and copies for requests side by side."""

    @property
    def tally(self) -> RequestTally:
        tally = self.__dict__.get("_tally")
        if tally is None:
            tally = self.__dict__["_tally"] = RequestTally()
            self.throttler.throttling_signaler = tally
        return tally

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_tally"}

    def for_another_slot(self):
        """A copy with a throttler of its own (and the same tally), for one more request
        in flight. Beam's throttler sees one request at a time: it counts a request as
        attempted when it starts and as successful when it ends, so requests in flight at
        once, sharing one, would throttle each other though none failed."""
        tally = self.tally
        clone = copy.copy(self)
        clone.__dict__["_tally"] = tally  # (copies, like pickles, leave it out)
        clone.throttler = ReactiveThrottler(
            window_ms=self._options.throttle_window_secs * 1000, bucket_ms=1000,
            overload_ratio=self._options.overload_ratio,
            namespace=self.throttler.logger.name,
            throttle_delay_secs=self._options.throttle_delay_secs)
        clone.throttler.throttling_signaler = tally
        return clone

    def _timed(self, send, *args):
        started = time.perf_counter()
        try:
            return send(*args)
        finally:
            self.tally.attempt((time.perf_counter() - started) * 1000)


def beam_kwargs(options: RemoteOptions) -> Dict[str, Any]:
    """RemoteModelHandler's retry and throttling arguments (see also
    `_Tallied.for_another_slot`)."""
    return {"num_retries": options.max_retries,
            "throttle_delay_secs": options.throttle_delay_secs,
            "window_ms": options.throttle_window_secs * 1000, "bucket_ms": 1000,
            "overload_ratio": options.overload_ratio}


class HttpModelHandler(_Tallied, RemoteModelHandler):
    """A model behind a REST model server (Open Inference Protocol V2, TF Serving)."""

    def __init__(self, options: RemoteOptions, protocol: protocols.Protocol,
                 namespace: str):
        super().__init__(namespace=namespace, retry_filter=retryable, **beam_kwargs(options))
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
            raise RemoteInferenceError(
                f"HTTP {response.status_code} {response.reason} from POST "
                f"{self._infer_url}: {server_message(response)}", response.status_code)
        return response


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
    from apache_beam.ml.inference.vertex_ai_inference import \
        VertexAIModelHandlerJSON  # pylint: disable=import-outside-toplevel

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
            self._options = options
            self._output_names = tuple(output_names)

        def create_client(self):
            init_aiplatform(self._options)
            return super().create_client()

        def request(self, batch, model, inference_args=None):
            results = self._timed(super().request, protocols.instances(batch), model,
                                  inference_args)
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
    from google.cloud import aiplatform  # pylint: disable=import-outside-toplevel
    kwargs: Dict[str, Any] = {}
    if options.credentials_file:
        from google.oauth2 import service_account  # pylint: disable=import-outside-toplevel
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
