"""The check a remote model gets when the pipeline is built: its metadata, fetched once
from the model's uri (`GET /v2/models/<name>`, `GET /v1/models/<name>`), so that a wrong
URL, model name, protocol or credential fails before Beam starts, with a message that
says which."""
from typing import Any

import requests

from inference.config import ConfigError
from inference.remote.handlers import PROBE_TIMEOUT_SECS, root_cause, server_message
from inference.remote.options import RemoteOptions
from inference.remote.protocols import Protocol

_SKIP = ("(options.probe=False skips this check, e.g. when only the workers can reach "
         "the server)")


def probe(model_name: str, options: RemoteOptions, protocol: Protocol) -> Any:
    """The model's metadata (parsed JSON); ConfigError when it cannot be had."""
    url, where = options.url, f"model {model_name!r} (remote, protocol {protocol.name!r})"
    headers = {}
    token = options.token()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = requests.get(url, headers=headers,
                                timeout=min(options.timeout_secs, PROBE_TIMEOUT_SECS))
    except requests.RequestException as e:
        raise ConfigError(f"{where}: cannot reach {url}: {root_cause(e)}. Is the server "
                          f"running, and are the host and port right? {_SKIP}") from None
    status = response.status_code
    if status in (401, 403):
        raise ConfigError(f"{where}: GET {url} was refused (HTTP {status}: "
                          f"{server_message(response)}): give the server's token through "
                          f"options.token_env or options.token_file")
    if status == 404:
        raise ConfigError(f"{where}: no model at {url} (HTTP 404: "
                          f"{server_message(response)}). Check the model name and version "
                          f"in the uri, and that the server speaks protocol "
                          f"{protocol.name!r}")
    if status != 200:
        raise ConfigError(f"{where}: GET {url} answered HTTP {status} "
                          f"{response.reason}: {server_message(response)} {_SKIP}")
    try:
        metadata = response.json()
    except ValueError:
        metadata = None
    why = protocol.check_metadata(metadata)
    if why:
        raise ConfigError(f"{where}: GET {url} answered, but {why}: is protocol "
                          f"{protocol.name!r} the server's? ({server_message(response)})")
    return metadata
