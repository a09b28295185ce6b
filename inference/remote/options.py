"""The options of a remote model (`ModelConfig(framework="remote", uri=..., options=...)`),
checked before any Beam work, with one message listing every problem.

Credentials are never part of the configuration (it is stored in ML Metadata and in
pipeline definitions): the configuration names where they are, an environment variable
(`token_env`) or a file (`token_file`, `credentials_file`), and they are read where the
requests are sent.
"""
import dataclasses
import re
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional

from apache_beam.io.filesystems import FileSystems

from inference.config import ConfigError, ModelConfig

PROTOCOLS = ("v2", "tfserving", "kserve-v1", "vertex")
# Records per request when the model sets no max_batch_size.
DEFAULT_REQUEST_SIZE = 256
# The uri each protocol takes; a match names the model (or the Vertex AI endpoint).
URI_FORMS = {
    "v2": (re.compile(r"^/v2/models/(?P<name>[^/]+)(/versions/(?P<version>[^/]+))?/?$"),
           "http(s)://<host>:<port>/v2/models/<name>[/versions/<version>]"),
    "tfserving": (re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                             r"(/(versions|labels)/(?P<version>[^/:]+))?/?$"),
                  "http(s)://<host>:<port>/v1/models/<name>[/versions/<version>]"),
    "kserve-v1": (re.compile(r"^/v1/models/(?P<name>[^/:]+)/?$"),
                  "http(s)://<host>:<port>/v1/models/<name>"),
    "vertex": (re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)"
                          r"/endpoints/(?P<endpoint_id>[^/]+)$"),
               "projects/<project>/locations/<region>/endpoints/<endpoint id>"),
}
_SECRET_HINT = ("credentials do not belong in the configuration (it is stored in ML "
                "Metadata and pipeline files): put the token in an environment variable "
                "named by options.token_env, or in a file named by options.token_file "
                "(options.credentials_file for a Vertex AI service account key)")


@dataclasses.dataclass(frozen=True)
class RemoteOptions:
    """A remote model's settings.

    protocol: "v2" (Open Inference Protocol: MLServer, Triton, KServe V2), "tfserving"
      (TF Serving REST `:predict`), "kserve-v1" (KServe's V1 protocol: TF Serving's
      request and response, its own model status) or "vertex" (a Vertex AI endpoint).
    url: the model's uri (see URI_FORMS).
    request_size: the most records one request holds (the model's max_batch_size).
    timeout_secs: per request (one attempt).
    max_in_flight: requests sent at once by one worker process.
    max_retries: attempts after the first, on 429 and 5xx answers, each request on its
      own (see `backoff`: 50-100 ms after a 500; from 100-200 ms, doubling, after a 429
      or an unavailable endpoint; what `Retry-After` says on 429 and 503). No answer,
      502, 503 and 504 (the endpoint is not there) are retried beyond it, until the
      circuit opens or the request has failed for `outage_secs`.
    outage_secs: with no request succeeding for this long while requests find the
      endpoint unavailable, or with 5 requests in a row failed after their retries, the
      model's circuit opens (per worker process): requests fail at once, as dead letters
      that say since when the endpoint is down, until a probe finds it back.
    probe_interval_secs: while the circuit is open, the endpoint is probed this often
      (HTTP protocols: `GET` the model's uri; Vertex AI: one request let through).
    throttle_delay_secs, throttle_window_secs, overload_ratio: Beam's client-side
      throttling (ReactiveThrottler): over the last window, once attempts exceed
      overload_ratio times the successful ones, requests wait throttle_delay_secs with a
      probability that grows with the failures.
    probe: check the model's metadata when the pipeline is built (HTTP protocols).
    token_env, token_file: where the bearer token is (HTTP protocols).
    input_name: the V2 input tensor's name for a stacked layout (default: the model's
      first input in its metadata, else "input-0").
    signature_name: TF Serving's signature.
    credentials_file, api_endpoint, network, private: Vertex AI (a service account key
      file, else the environment's Application Default Credentials; another API
      endpoint; a private endpoint's VPC network).
    """
    protocol: str
    url: str
    request_size: int = DEFAULT_REQUEST_SIZE
    timeout_secs: float = 60.0
    max_in_flight: int = 4
    max_retries: int = 5
    outage_secs: float = 30.0
    probe_interval_secs: float = 5.0
    throttle_delay_secs: int = 5
    throttle_window_secs: int = 1
    overload_ratio: float = 2.0
    probe: bool = True
    token_env: str = ""
    token_file: str = ""
    input_name: str = ""
    signature_name: str = ""
    credentials_file: str = ""
    api_endpoint: str = ""
    network: str = ""
    private: bool = False

    @property
    def target(self) -> Dict[str, str]:
        """What the uri names: the model (`name`, `version`) or the Vertex AI endpoint
        (`project`, `region`, `endpoint_id`)."""
        pattern, _ = URI_FORMS[self.protocol]
        path = self.url if self.protocol == "vertex" else urllib.parse.urlsplit(self.url).path
        return {k: v for k, v in pattern.match(path).groupdict().items() if v}

    def token(self) -> Optional[str]:
        """The bearer token, read from where the options say, or None."""
        if self.token_env:
            import os
            value = os.environ.get(self.token_env)
            if not value:
                raise ConfigError(f"options.token_env: the environment variable "
                                  f"{self.token_env!r} is not set on this machine")
            return value.strip()
        if self.token_file:
            return read_secret_file(self.token_file).decode().strip()
        return None


def read_secret_file(path: str) -> bytes:
    """A credentials file's bytes (local or gs://); the error names the file only."""
    try:
        with FileSystems.open(path) as f:
            return f.read()
    except Exception as e:
        raise ConfigError(f"cannot read the credentials file {path!r}: "
                          f"{type(e).__name__}") from None


_FIELDS = {f.name: f for f in dataclasses.fields(RemoteOptions)}
_COMMON = ("protocol", "timeout_secs", "max_in_flight", "max_retries", "outage_secs",
           "probe_interval_secs", "throttle_delay_secs", "throttle_window_secs",
           "overload_ratio")
_ALLOWED = {
    "v2": _COMMON + ("probe", "token_env", "token_file", "input_name"),
    "tfserving": _COMMON + ("probe", "token_env", "token_file", "signature_name"),
    "kserve-v1": _COMMON + ("probe", "token_env", "token_file"),
    "vertex": _COMMON + ("credentials_file", "api_endpoint", "network", "private"),
}
_POSITIVE_INTS = ("max_in_flight", "throttle_delay_secs", "throttle_window_secs")


def parse(model: ModelConfig) -> RemoteOptions:
    """The model's RemoteOptions; ConfigError listing every problem."""
    options: Mapping[str, Any] = model.options
    protocol = options.get("protocol")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"model {model.name!r}: framework 'remote' needs options.protocol, "
                          f"one of {PROTOCOLS}; got {protocol!r}")
    problems = _uri_problems(protocol, model.uri)
    allowed = _ALLOWED[protocol]
    for key in sorted(set(options) - set(allowed)):
        if key in _FIELDS:
            problems.append(f"options.{key} does not apply to protocol {protocol!r}")
        elif re.search(r"token|secret|password|key|auth|header|credential", key, re.I):
            problems.append(f"options.{key}: {_SECRET_HINT}")
        else:
            problems.append(f"unknown options.{key}; protocol {protocol!r} takes "
                            f"{sorted(allowed)}")
    values = {k: v for k, v in options.items() if k in allowed}
    problems += _value_problems(values)
    if values.get("token_env") and values.get("token_file"):
        problems.append("give options.token_env or options.token_file, not both")
    if values.get("private") and not values.get("network"):
        problems.append("options.private needs options.network (the endpoint's VPC)")
    if problems:
        raise ConfigError(f"model {model.name!r} (remote):\n  - " + "\n  - ".join(problems))
    request_size = model.max_batch_size or max(DEFAULT_REQUEST_SIZE, model.min_batch_size or 0)
    return RemoteOptions(url=model.uri, request_size=request_size, **values)


def _uri_problems(protocol: str, uri: str) -> List[str]:
    pattern, form = URI_FORMS[protocol]
    if protocol == "vertex":
        return [] if pattern.match(uri) else [
            f"protocol 'vertex' takes the endpoint's resource name as uri, {form}; "
            f"got {uri!r}"]
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"uri {uri!r} is not an http(s) URL; protocol {protocol!r} takes {form}"]
    problems = []
    if parts.username or parts.password or parts.query:
        problems.append(f"the uri holds a user, password or query string: {_SECRET_HINT}")
    if not pattern.match(parts.path):
        other = [p for p in ("v2", "tfserving", "kserve-v1") if p != protocol
                 and URI_FORMS[p][0].match(parts.path)]
        hint = (f"; that is a {' or '.join(map(repr, other))} uri: set "
                f"options.protocol to {'one of them' if len(other) > 1 else repr(other[0])}"
                if other else "")
        problems.append(f"protocol {protocol!r} takes a uri like {form}; got path "
                        f"{parts.path!r}{hint}")
    return problems


def _value_problems(values: Mapping[str, Any]) -> List[str]:
    problems = []
    for key, value in values.items():
        kind = _FIELDS[key].type
        if key in _POSITIVE_INTS or key == "max_retries":
            least = 0 if key == "max_retries" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                problems.append(f"options.{key}={value!r}: must be an integer >= {least}")
        elif kind is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                problems.append(f"options.{key}={value!r}: must be a positive number")
        elif kind is bool:
            if not isinstance(value, bool):
                problems.append(f"options.{key}={value!r}: must be true or false")
        elif not isinstance(value, str):
            problems.append(f"options.{key}={value!r}: must be a string")
    return problems
