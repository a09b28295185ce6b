"""The circuit breaker of a remote model's endpoint, on a clock the test moves."""
import threading

from inference.remote.breaker import CircuitBreaker, EndpointDown
from inference.remote.handlers import RemoteInferenceError


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def breaker(clock, probe=None, outage_secs=30):
    return CircuitBreaker("http://127.0.0.1:1/v2/models/m", outage_secs, 5, 3, probe, clock)


def test_it_opens_after_outage_secs_without_a_success_and_says_why():
    clock = Clock()
    circuit = breaker(clock)
    circuit.failed(RemoteInferenceError("no answer from POST x: refused"))
    clock.now += 29
    circuit.failed(RemoteInferenceError("no answer from POST x: refused"))
    assert circuit.admit() and not circuit.is_open
    clock.now += 1
    circuit.failed(RemoteInferenceError("no answer from POST x: refused again"))
    assert circuit.is_open and not circuit.admit()
    error = circuit.down_error()
    assert isinstance(error, EndpointDown) and isinstance(error, RemoteInferenceError)
    message = str(error)
    assert message.startswith("not sent: the endpoint http://127.0.0.1:1/v2/models/m is "
                              "down (circuit open since ")
    assert "last error: no answer from POST x: refused again" in message
    clock.now += 12
    assert circuit.drain_open_seconds() == 12
    assert circuit.drain_open_seconds() == 0


def test_a_success_within_the_window_keeps_it_closed():
    clock = Clock()
    circuit = breaker(clock)
    circuit.failed(RemoteInferenceError("x"))
    clock.now += 20
    circuit.succeeded()
    clock.now += 20
    circuit.failed(RemoteInferenceError("x"))
    assert not circuit.is_open


def test_an_answer_to_a_request_sent_before_the_outage_began_keeps_its_clock():
    """A request in flight as the server died may be answered after a later request found
    it gone: that answer does not restart the outage window."""
    clock = Clock()
    circuit = breaker(clock)
    sent_before = clock.now
    clock.now += 1
    circuit.failed(RemoteInferenceError("no answer"))
    clock.now += 1
    circuit.succeeded(sent_before)
    clock.now += 29
    circuit.failed(RemoteInferenceError("no answer"))
    assert circuit.is_open
    circuit.succeeded(sent_before)
    assert circuit.is_open
    circuit.succeeded(clock.now)
    assert not circuit.is_open


def test_an_answer_to_a_request_sent_after_the_first_failed_one_restarts_its_clock():
    """A timeout is seen long after its request went: answers to requests sent since then
    show the endpoint up, though they come after the timeout was seen."""
    clock = Clock()
    circuit = breaker(clock)
    timed_out_sent = clock.now
    clock.now += 20
    answered_sent = clock.now
    clock.now += 40
    circuit.failed(RemoteInferenceError("no answer within 60 s"), timed_out_sent)
    circuit.succeeded(answered_sent)
    clock.now += 31  # past the outage window, counted from the first timeout seen
    circuit.failed(RemoteInferenceError("no answer within 60 s"), clock.now - 60)
    assert not circuit.is_open


def test_requests_failed_after_their_retries_in_a_row_open_it():
    clock = Clock()
    circuit = breaker(clock)
    circuit.gave_up()
    circuit.gave_up()
    circuit.succeeded()
    circuit.gave_up()
    circuit.gave_up()
    assert not circuit.is_open
    circuit.gave_up()
    assert circuit.is_open


def test_without_a_probe_one_request_in_each_interval_is_let_through():
    clock = Clock()
    circuit = breaker(clock, outage_secs=0)
    circuit.failed(RemoteInferenceError("x"))
    assert circuit.is_open and not circuit.admit()
    clock.now += 5
    assert circuit.admit() and not circuit.admit()  # the trial request, and no other
    clock.now += 5
    assert circuit.admit()
    circuit.succeeded()
    assert not circuit.is_open and circuit.admit() and circuit.admit()


def test_a_probe_that_answers_closes_it_off_the_request_path():
    clock, answered, probed = Clock(), [False], threading.Event()

    def probe():
        probed.set()
        return answered[0]

    circuit = breaker(clock, probe, outage_secs=0)
    circuit.failed(RemoteInferenceError("x"))
    clock.now += 5
    assert not circuit.admit()  # the request fails at once; the probe runs on a thread
    assert probed.wait(5)
    assert circuit.is_open
    probed.clear()
    answered[0] = True
    clock.now += 5
    assert not circuit.admit()
    assert probed.wait(5)
    for _ in range(100):
        if not circuit.is_open:
            break
        threading.Event().wait(0.05)
    assert not circuit.is_open and circuit.admit()
