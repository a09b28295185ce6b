"""A model's versions as the files matching a pattern: the newest serves, and each worker
looks for a newer one as it runs (`--model_pattern` in streaming).

Beam's own way is `WatchFilePattern` as RunInference's side input. The local streaming
runner cannot run it (a splittable DoFn), and it blocks a side input until its watermark
passes the main input's window, so a new version would wait a window. Watching in the
worker is one path on every runner, needs no windows, and lets a version that cannot load
be skipped while an older one serves, and tried again later.
"""
import dataclasses
import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

from apache_beam.io.filesystems import FileSystems

from inference.config import ConfigError
from inference.observe import metrics

# A version: its path and when it was last written (a file rewritten in place is new).
Version = Tuple[str, float]
T = TypeVar("T")


def newest(pattern: str) -> Optional[Version]:
    """The newest file matching `pattern`, by modification time then name; None if none."""
    found = _newest_first(pattern)
    return found[0] if found else None


def newest_path(pattern: str) -> str:
    """The path of the newest file matching `pattern`; ConfigError if none does."""
    version = newest(pattern)
    if version is None:
        raise ConfigError(f"no model file matches {pattern!r}")
    return version[0]


def _older(version: Version, than: Version) -> bool:
    return (version[1], version[0]) < (than[1], than[0])


def _newest_first(pattern: str) -> List[Version]:
    found = FileSystems.match([pattern])[0].metadata_list
    return [(m.path, m.last_updated_in_seconds) for m in
            sorted(found, key=lambda m: (m.last_updated_in_seconds, m.path), reverse=True)]


# A failed version waits this long before its first retry, in checks (`check_secs`); each
# failure doubles the wait, up to RETRY_MAX_SECS.
RETRY_FIRST_CHECKS = 2
RETRY_MAX_SECS = 3600.0


@dataclasses.dataclass
class _Failure:
    retry_at: float  # time.monotonic()
    wait: float


# Versions that failed to load in this process, by pattern: skipped by every later load
# and check here (a worker may load its model again at any time) until their wait ends,
# then tried again (a storage hiccup passes; a broken file fails again and waits twice as
# long); a rewritten file is a new version, tried at once.
_failed: Dict[str, Dict[Version, _Failure]] = {}
_failed_lock = threading.Lock()


class ModelVersions:
    """Where a model's versions are: `pattern`, looked at every `check_secs`. The newest
    that loads serves; deleting it rolls back to the one before."""

    def __init__(self, pattern: str, check_secs: float):
        if check_secs <= 0:
            raise ConfigError(f"model versions of {pattern!r}: check_secs must be > 0, "
                              f"not {check_secs}")
        self.pattern = pattern
        self.check_secs = check_secs

    def loadable(self, listed: List[Version]) -> List[Version]:
        """The versions of `listed` not failed here, or due to be tried again."""
        now = time.monotonic()
        with _failed_lock:
            waiting = {version for version, failure in _failed.get(self.pattern, {}).items()
                       if failure.retry_at > now}
        return [v for v in listed if v not in waiting]

    def load_version(self, load: Callable[[str], T], version: Version) -> T:
        """What `load` makes of `version`; a version that loads is no longer failed."""
        loaded = load(version[0])
        with _failed_lock:
            _failed.get(self.pattern, {}).pop(version, None)
        return loaded

    def load_newest(self, load: Callable[[str], T], model_name: str) -> Tuple[T, Version]:
        """What `load(path)` makes of the newest version that loads, and that version.
        Raises the oldest's error when none loads."""
        candidates = self.loadable(_newest_first(self.pattern))
        if not candidates:
            raise ConfigError(f"model {model_name!r}: no model file matches "
                              f"{self.pattern!r} that loads")
        for version in candidates[:-1]:
            try:
                return self.load_version(load, version), version
            except Exception as e:
                self.failed(version, e, model_name)
        return self.load_version(load, candidates[-1]), candidates[-1]

    def failed(self, version: Version, error: Exception, model_name: str) -> None:
        """Notes a version that did not load, to be tried again after a wait: logged as an
        error and counted when it first fails here, its retries that fail again logged as
        warnings."""
        with _failed_lock:
            known = _failed.setdefault(self.pattern, {})
            before = known.get(version)
            wait = (min(before.wait * 2, RETRY_MAX_SECS) if before else
                    min(self.check_secs * RETRY_FIRST_CHECKS, RETRY_MAX_SECS))
            known[version] = _Failure(time.monotonic() + wait, wait)
        if before:
            logging.warning("model %r: version %s still could not be loaded (tried again in "
                            "%g s): %s", model_name, version[0], wait, error)
            return
        logging.error("model %r: version %s could not be loaded, an older one serves (tried "
                      "again in %g s): %s", model_name, version[0], wait, error)
        metrics.counter(metrics.MODEL_VERSION_FAILURES, model_name).inc()

    def watch(self, serving: Version) -> "VersionWatch":
        return VersionWatch(self, serving)


class VersionWatch:
    """One worker's watch, from the version it serves: `due()` says when to look again,
    `next(load)` loads the newest loadable version when it is newer than the one serving,
    or when the serving one's file is gone (a rollback), and returns what `load` made of
    it.

    Thread-safe: the threads of a worker process share their model."""

    def __init__(self, versions: ModelVersions, serving: Version):
        self._versions = versions
        self._serving = serving
        self._next_check = time.monotonic() + versions.check_secs
        self._lock = threading.Lock()

    def due(self) -> bool:
        return time.monotonic() >= self._next_check

    def next(self, load: Callable[[str], T], model_name: str) -> Optional[T]:
        """What `load` made of the newest version, if it is new here; else None. Raises
        nothing: a version that cannot be listed or loaded is logged, the serving one goes
        on."""
        with self._lock:
            if not self.due():
                return None
            self._next_check = time.monotonic() + self._versions.check_secs
            try:
                listed = _newest_first(self._versions.pattern)
            except Exception as e:  # a storage hiccup: the next check tries again
                logging.warning("model %r: could not list %s: %s", model_name,
                                self._versions.pattern, e)
                return None
            candidates = self._versions.loadable(listed)
            if not candidates or candidates[0] == self._serving:
                return None
            if _older(candidates[0], self._serving) and any(
                    path == self._serving[0] for path, _ in listed):
                return None  # a newer version failed (the serving file rewritten, say)
            version = candidates[0]
            try:
                loaded = self._versions.load_version(load, version)
            except Exception as e:
                self._versions.failed(version, e, model_name)
                return None
            self._serving = version
            logging.info("model %r now serves %s", model_name, version[0])
            metrics.counter(metrics.MODEL_VERSIONS, model_name).inc()
            return loaded
