"""The delays before a failed request is sent again."""
import datetime

from inference.remote import backoff


def test_the_first_retry_comes_soon_and_overload_doubles_the_wait_up_to_a_cap():
    for _ in range(200):
        assert 0.1 <= backoff.delay(0) <= 0.2
        assert 0.2 <= backoff.delay(1) <= 0.4
        assert 0.4 <= backoff.delay(2) <= 0.8
        assert backoff.MAX_SECS / 2 <= backoff.delay(10) <= backoff.MAX_SECS
        # A server's own error (500) is retried soon, however often.
        assert 0.05 <= backoff.delay(3, overloaded=False) <= 0.1
    assert len({backoff.delay(0) for _ in range(20)}) > 1  # jittered


def test_the_server_says_how_long_to_wait():
    assert backoff.delay(0, retry_after=3) == 3
    assert backoff.delay(5, retry_after=0) == 0
    assert backoff.delay(0, retry_after=3600) == backoff.MAX_RETRY_AFTER_SECS
    assert backoff.parse_retry_after("2") == 2.0
    now = datetime.datetime(2026, 12, 7, 12, 0, 0, tzinfo=datetime.timezone.utc)
    assert backoff.parse_retry_after("Mon, 07 Dec 2026 12:00:05 GMT", now) == 5.0
    assert backoff.parse_retry_after("Mon, 07 Dec 2026 11:00:00 GMT", now) == 0.0
    assert backoff.parse_retry_after(None) is None
    assert backoff.parse_retry_after("soon") is None
