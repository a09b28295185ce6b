"""A circuit breaker for one remote model in one worker process: once its endpoint looks
down, requests fail at once instead of each waiting out its retries.

The circuit opens when no request has succeeded for `outage_secs` while requests found
the endpoint unavailable (no answer, 502, 503, 504), or when `failed_requests_to_open`
requests in a row failed after their retries. While it is open, requests are not sent:
their records become dead letters (`EndpointDown`) whose message says since when the
endpoint is down and the last error. Every `probe_interval_secs`, while requests keep
coming, one probe checks the endpoint (a `probe` call off the request path, or, without
one, a single request let through); an answer closes the circuit.

Written here because neither Beam (`RemoteModelHandler` only retries and throttles) nor
`requests` has one, and the breaker has to see every request of the model in the process.
"""
import datetime
import threading
import time
from typing import Callable, Optional

from inference.remote.handlers import RemoteInferenceError


class EndpointDown(RemoteInferenceError):
    """A request not sent because the model's endpoint is down (the circuit is open)."""


class CircuitBreaker:
    """The health of one endpoint as the requests of one worker process see it.

    probe: a quick check that the endpoint answers (True when it does), run on a thread
      of its own while the circuit is open; None lets one real request through instead.
    """

    def __init__(self, endpoint: str, outage_secs: float, probe_interval_secs: float,
                 failed_requests_to_open: int,
                 probe: Optional[Callable[[], bool]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self._endpoint = endpoint
        self._outage_secs = outage_secs
        self._probe_interval_secs = probe_interval_secs
        self._failed_requests_to_open = failed_requests_to_open
        self._probe = probe
        self._clock = clock
        self._changed = threading.Condition()
        self._failing_since: Optional[float] = None  # when the outage was first seen
        self._failed_sent_at: Optional[float] = None  # when its first failed request went
        self._failed_requests = 0
        self._last_error = ""
        self._opened_at: Optional[float] = None
        self._opened_wall: Optional[datetime.datetime] = None
        self._next_probe = 0.0
        self._probing = False
        self._open_seconds_counted_to = 0.0
        self._open_seconds = 0.0

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def admit(self) -> bool:
        """Whether a request may be sent now: always while the circuit is closed; while it
        is open, only a probe request (when there is no `probe`)."""
        with self._changed:
            if self._opened_at is None:
                return True
            now = self._clock()
            if now < self._next_probe or self._probing:
                return False
            self._next_probe = now + self._probe_interval_secs
            if self._probe is None:
                return True
            self._probing = True
        threading.Thread(target=self._run_probe, daemon=True,
                         name=f"probe-{self._endpoint}").start()
        return False

    def now(self) -> float:
        """The breaker's clock, on which requests' `sent_at` times are given."""
        return self._clock()

    def succeeded(self, sent_at: Optional[float] = None):
        """The endpoint answered (any answer but a retryable error) a request sent at
        `sent_at` (None: now): the circuit closes. An answer to a request sent before the
        outage's first failed request was (one in flight as the endpoint went down) says
        nothing of the endpoint since, and changes nothing."""
        with self._changed:
            if (sent_at is not None and self._failed_sent_at is not None
                    and sent_at < self._failed_sent_at):
                return
            self._failing_since = self._failed_sent_at = None
            self._failed_requests = 0
            if self._opened_at is not None:
                self._open_seconds += self._clock() - max(self._opened_at,
                                                          self._open_seconds_counted_to)
                self._opened_at = self._opened_wall = None
                self._changed.notify_all()

    def failed(self, error: Exception, sent_at: Optional[float] = None):
        """An attempt, sent at `sent_at` (None: now), found the endpoint unavailable:
        opens the circuit once nothing has succeeded for `outage_secs`."""
        with self._changed:
            now = self._clock()
            self._last_error = str(error)
            if self._failing_since is None:
                self._failing_since = now
                self._failed_sent_at = now if sent_at is None else sent_at
            if now - self._failing_since >= self._outage_secs:
                self._open(now)

    def gave_up(self):
        """A request failed after its retries: opens the circuit after
        `failed_requests_to_open` in a row."""
        with self._changed:
            self._failed_requests += 1
            if self._failed_requests >= self._failed_requests_to_open:
                self._open(self._clock())

    def down_error(self, sent: Optional[Exception] = None) -> EndpointDown:
        """The error of a request the open circuit stopped: not sent, or, when it was,
        not sent again after its error `sent`."""
        with self._changed:
            since = self._opened_wall or datetime.datetime.now(datetime.timezone.utc)
            last = self._last_error or "(none recorded)"
        down = (f"the endpoint {self._endpoint} is down (circuit open since "
                f"{since:%Y-%m-%d %H:%M:%S} UTC: no answer for {self._outage_secs:g} s, or "
                f"{self._failed_requests_to_open} requests in a row failed)")
        replay = "Replay these dead letters once it is back (python -m inference.replay)"
        if sent is not None:
            return EndpointDown(f"{sent}; not sent again: {down}. {replay}",
                                getattr(sent, "status", 0))
        return EndpointDown(f"not sent: {down}; last error: {last}. {replay}")

    def drain_open_seconds(self) -> float:
        """Seconds the circuit was open since the last drain."""
        with self._changed:
            now = self._clock()
            total, self._open_seconds = self._open_seconds, 0.0
            if self._opened_at is not None:
                total += now - max(self._opened_at, self._open_seconds_counted_to)
            self._open_seconds_counted_to = now
            return total

    def _open(self, now: float):
        if self._opened_at is None:
            self._opened_at = now
            self._opened_wall = datetime.datetime.now(datetime.timezone.utc)
            self._next_probe = now + self._probe_interval_secs
            self._changed.notify_all()

    def _run_probe(self):
        started = self._clock()
        try:
            answered = self._probe()
        except Exception:  # a probe that fails: still down
            answered = False
        with self._changed:
            self._probing = False
        if answered:
            self.succeeded(started)
