"""How long a failed request waits before it is sent again.

Beam's `RemoteModelHandler` retries a whole call with `retry.with_exponential_backoff`
fixed at a first delay of 5 s and no regard for `Retry-After`; with a batch's requests
sent side by side, one failed request then holds the whole batch for seconds. So the
engine retries each request on its own (see `fanout`), after these delays: from INITIAL_SECS,
doubling (up to MAX_SECS) while the endpoint is overloaded or unavailable, ERROR_SECS
after a server's own error, with jitter (a uniform draw between half the bound and the
bound, so that requests that failed together do not retry together), and what the server asks for
when it says (`Retry-After` on 429 and 503), up to MAX_RETRY_AFTER_SECS.
"""
import datetime
import email.utils
import random
from typing import Optional

INITIAL_SECS = 0.2
ERROR_SECS = 0.1
MAX_SECS = 4.0
MAX_RETRY_AFTER_SECS = 60.0


def delay(attempt: int, retry_after: Optional[float] = None,
          overloaded: bool = True) -> float:
    """Seconds to wait before retry number `attempt` + 1 (0-based): the server's
    `retry_after` when it gave one, else a jittered backoff, exponential from INITIAL_SECS
    when the endpoint is `overloaded` (429, no answer, 502-504), flat at ERROR_SECS when
    it answered with an error of its own (500: waiting longer does not help it, and Beam's
    client-side throttling holds requests back when most fail)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER_SECS)
    bound = min(MAX_SECS, INITIAL_SECS * 2 ** attempt) if overloaded else ERROR_SECS
    return random.uniform(bound / 2, bound)


def parse_retry_after(value: Optional[str],
                      now: Optional[datetime.datetime] = None) -> Optional[float]:
    """A `Retry-After` header's seconds (it holds seconds or an HTTP date); None when
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return max(0.0, (when - now).total_seconds())
