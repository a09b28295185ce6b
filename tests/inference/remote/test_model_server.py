"""Remote models against real model servers on 127.0.0.1 (MLServer's scikit-learn runtime,
KServe's own ModelServer on V1 and V2): the BulkInferrer executor scores through them
with the local model's predictions; a flaky or throttling server slows a run down and
loses nothing; a server down for a while loses nothing; a server killed mid-run ends the
run soon, failed by default or complete with every unscored record a dead letter; a wrong
URL, model, protocol or credential fails before Beam starts."""
import logging
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.engine import models
from tests import helpers
from tests.inference.remote import servers
from tests.inference.remote.conftest import FEATURES, MODEL_NAME, start
from tests.inference.remote.proxy import FaultProxy, kill_at

N = 300


def remote_config(uri: str, max_batch_size: int = 32, **options) -> InferenceConfig:
    return InferenceConfig(models=[ModelConfig(
        name=MODEL_NAME, framework="remote", uri=uri, inputs=InputSpec(features=FEATURES),
        output_names=["predict_proba"], max_batch_size=max_batch_size,
        options={"protocol": "v2", **options})])


def run(tmp_path, taxi_model, config, **properties):
    """The executor on the test's records, with `properties` (e.g. max_failure_fraction);
    (InferenceResult artifact, failures folder)."""
    examples = helpers.examples_artifact(str(tmp_path / "examples"),
                                         {"eval": taxi_model.records})
    failures = str(tmp_path / "failures")
    result = helpers.run_bulk_inferrer(
        tmp_path, {"examples": [examples]}, config, failures_uri=failures,
        **{k: str(v) for k, v in properties.items()})
    return result, failures


def predictions(result_uri: str):
    """record -> its predict_proba, from the PredictionLogs written."""
    logs = helpers.read_prediction_logs(f"{result_uri}/prediction_logs-*.gz")
    return {log.predict_log.request.inputs["examples"].string_val[0]:
            tf.make_ndarray(log.predict_log.response.outputs["predict_proba"])
            for log in logs}


def assert_match_local(found, taxi_model):
    assert found, "no predictions"
    for record, value in found.items():
        np.testing.assert_allclose(np.ravel(value), taxi_model.expected[record], rtol=1e-6)


def test_bulk_inferrer_scores_through_the_server_as_the_local_model(
        tmp_path, taxi_model, model_server):
    local, _ = run(tmp_path / "local", taxi_model, InferenceConfig(models=[ModelConfig(
        name=MODEL_NAME, framework="sklearn", uri=str(taxi_model.path),
        inputs=InputSpec(features=FEATURES), output_names=["predict_proba"],
        options={"method": "predict_proba", "trusted": True})]))
    remote, failures = run(tmp_path / "remote", taxi_model,
                           remote_config(model_server.model_url, max_in_flight=4))

    local_predictions, remote_predictions = predictions(local.uri), predictions(remote.uri)
    assert len(remote_predictions) == N and not helpers.read_failures(failures)
    assert remote_predictions.keys() == local_predictions.keys()
    for record, value in remote_predictions.items():
        np.testing.assert_allclose(value, local_predictions[record], rtol=1e-6)
    assert_match_local(remote_predictions, taxi_model)
    figures = {k: v for k, v in remote.mlmd_artifact.custom_properties.items()
               if k.startswith(f"{MODEL_NAME}.")}
    # Requests hold at most max_batch_size (32) records: at least ceil(300 / 32).
    assert remote.get_int_custom_property(f"{MODEL_NAME}.requests") >= 10
    assert remote.get_int_custom_property(f"{MODEL_NAME}.retries") == 0
    assert remote.get_int_custom_property(f"{MODEL_NAME}.failed_requests") == 0
    assert remote.get_int_custom_property(f"{MODEL_NAME}.predictions") == N
    p50 = remote.get_float_custom_property(f"{MODEL_NAME}.request_ms_p50")
    p99 = remote.get_float_custom_property(f"{MODEL_NAME}.request_ms_p99")
    assert 0 < p50 <= p99, figures
    # 4 requests in flight at once, none failing: none held back by Beam's throttler.
    assert remote.get_int_custom_property(f"{MODEL_NAME}.throttled_seconds") == 0, figures
    assert f"{MODEL_NAME}.requests" not in {
        k for k in local.mlmd_artifact.custom_properties}  # local models send none


def test_quota_errors_wait_what_the_server_says_and_lose_nothing(tmp_path, taxi_model,
                                                                model_server):
    """The first 8 inference requests get 429 with `Retry-After: 1` or 503 without: each
    is retried on its own, the 429s after the second the server asked for, the 503s after
    a short backoff; every record is predicted."""
    failing = {}

    def quota(number, method, path):
        if method == "POST" and len(failing) < 8:
            failing[number] = 429 if len(failing) % 2 else 503
            return (429, {"Retry-After": "1"}) if failing[number] == 429 else 503
        return None

    with FaultProxy(model_server.port, quota) as proxy:
        result, failures = run(tmp_path, taxi_model, remote_config(
            f"{proxy.url}/v2/models/{MODEL_NAME}", max_batch_size=16, max_in_flight=8,
            max_retries=3))
        statuses = proxy.statuses()
        posts = [(when, status, body) for (method, _, status, _), when, body
                 in zip(proxy.seen, proxy.times, proxy.bodies) if method == "POST"]

    found = predictions(result.uri)
    assert len(found) == N and not helpers.read_failures(failures)
    assert_match_local(found, taxi_model)
    assert statuses.count(429) == 4 and statuses.count(503) == 4
    for i, (when, status, body) in enumerate(posts):
        if status in (429, 503):  # the same request again: after 1 s, or soon
            again = next(later for later, _, same in posts[i + 1:] if same == body)
            assert (again - when >= 1.0) if status == 429 else (again - when < 0.9)
    requests = result.get_int_custom_property(f"{MODEL_NAME}.requests")
    assert requests == len(statuses)
    assert result.get_int_custom_property(f"{MODEL_NAME}.retries") == 8
    assert result.get_int_custom_property(f"{MODEL_NAME}.failed_requests") == 0
    assert result.get_float_custom_property(f"{MODEL_NAME}.circuit_open_seconds") == 0


def test_a_flaky_server_loses_nothing(tmp_path, taxi_model, model_server):
    """Every 5th inference request answers HTTP 500: each is retried on its own, and
    every record is predicted once."""
    def flaky(number, method, path):
        return 500 if method == "POST" and number % 5 == 0 else None

    with FaultProxy(model_server.port, flaky) as proxy:
        result, failures = run(tmp_path, taxi_model, remote_config(
            f"{proxy.url}/v2/models/{MODEL_NAME}", max_batch_size=8, max_in_flight=4,
            max_retries=3))
        statuses = proxy.statuses()

    found = predictions(result.uri)
    assert len(found) == N and not helpers.read_failures(failures)
    assert_match_local(found, taxi_model)
    assert statuses.count(500) >= N // 8 // 5
    assert result.get_int_custom_property(f"{MODEL_NAME}.retries") == statuses.count(500)


def test_a_request_the_endpoint_never_answers_gives_up_while_the_others_score(
        tmp_path, taxi_model, model_server):
    """One request is answered 502 every time (a gateway that chokes on it) while the
    others are answered: it is retried for outage_secs at most, then its records are dead
    letters with its own error, and the run ends."""
    doomed = []

    def choke(method, body):  # the first inference request's body, every time
        if method == "POST":
            doomed[:] = doomed or [body]
            return 502 if body == doomed[0] else None
        return None

    started = time.monotonic()
    with FaultProxy(model_server.port, body_fault=choke) as proxy:
        result, failures = run(tmp_path, taxi_model, remote_config(
            f"{proxy.url}/v2/models/{MODEL_NAME}", max_batch_size=10, max_in_flight=2,
            max_retries=1, outage_secs=2), max_failure_fraction=1.0)

    assert time.monotonic() - started < 60
    dead = helpers.read_failures(failures)
    assert len(dead) == 10 and len(predictions(result.uri)) == N - 10
    # Its own error; once it is the batch's last request, nothing succeeds beside it, and
    # the circuit may open for it (the probe closes it again: the server answers).
    assert all(d.message.startswith("HTTP 502 Bad Gateway from POST") for d in dead), dead[0]


def test_a_quota_longer_than_the_outage_window_does_not_open_the_circuit(
        tmp_path, taxi_model, model_server):
    """For 3 s every inference request is answered 429 with `Retry-After: 1`, longer than
    outage_secs (1): a server that answers is not down; every record is predicted."""
    started = []

    def quota(number, method, path):
        if method == "POST":
            started.append(time.monotonic())
            if started[-1] - started[0] < 3:
                return 429, {"Retry-After": "1"}
        return None

    with FaultProxy(model_server.port, quota) as proxy:
        result, failures = run(tmp_path, taxi_model, remote_config(
            f"{proxy.url}/v2/models/{MODEL_NAME}", max_batch_size=50, max_in_flight=2,
            outage_secs=1))
        statuses = proxy.statuses()

    assert len(predictions(result.uri)) == N and not helpers.read_failures(failures)
    assert statuses.count(429) >= 4
    assert result.get_float_custom_property(f"{MODEL_NAME}.circuit_open_seconds") == 0


@pytest.fixture(scope="module")
def kserve_server(tmp_path_factory, taxi_model, kserve_bin):
    server = start(servers.KServe(tmp_path_factory.mktemp("kserve"), MODEL_NAME,
                                  taxi_model.estimator, kserve_bin))
    yield server
    server.stop()


@pytest.mark.parametrize("protocol", ["v2", "kserve-v1"])
def test_kserve_v1_and_v2_score_as_the_local_model(tmp_path, taxi_model, kserve_server,
                                                   protocol):
    version = "v1" if protocol == "kserve-v1" else "v2"
    url = f"{kserve_server.url}/{version}/models/{MODEL_NAME}"
    result, failures = run(tmp_path, taxi_model, remote_config(url, protocol=protocol))

    found = predictions(result.uri)
    assert len(found) == N and not helpers.read_failures(failures)
    assert_match_local(found, taxi_model)
    if protocol == "kserve-v1":  # KServe V1 is not TF Serving: the probe says which to set
        with pytest.raises(ConfigError, match="KServe V1's model status, not TF Serving's: "
                                              "set options.protocol='kserve-v1'"):
            models.create_handlers(remote_config(url, protocol="tfserving"))


@pytest.mark.parametrize("max_failure_fraction, outage_secs", [(1.0, 3), (None, None)])
def test_a_server_killed_mid_run_ends_the_run_soon(tmp_path, taxi_model, fresh_server,
                                                   max_failure_fraction, outage_secs):
    """At the 6th request the server is killed: the requests in flight wait out the
    outage window (`outage_secs`, 30 s by default), then the circuit opens and every
    record not scored ends a dead letter at once (stage inference, saying the endpoint is
    down); the run completes with them, or, with the default max_failure_fraction, fails
    naming the endpoint and the records not sent."""
    options = {"outage_secs": outage_secs, "probe_interval_secs": 1} if outage_secs else {}
    config = remote_config(None, max_batch_size=10, max_in_flight=2, **options)
    fraction = {} if max_failure_fraction is None else {
        "max_failure_fraction": max_failure_fraction}
    started = time.monotonic()
    with FaultProxy(fresh_server.port, kill_at(fresh_server, 6)) as proxy:
        endpoint = config.models[0].uri = f"{proxy.url}/v2/models/{MODEL_NAME}"
        if max_failure_fraction is None:
            with pytest.raises(RuntimeError) as failed:
                run(tmp_path, taxi_model, config, **fraction)
            message = str(failed.value)
            result_uri = next(tmp_path.glob("bulk_inferrer-*/inference_result"))
        else:
            result, _ = run(tmp_path, taxi_model, config, **fraction)
            result_uri = result.uri
            not_sent = result.get_int_custom_property(f"{MODEL_NAME}.circuit_open_records")
            assert result.get_float_custom_property(
                f"{MODEL_NAME}.circuit_open_seconds") > 0
        seconds = time.monotonic() - started
        statuses = proxy.statuses()

    assert seconds < (120 if outage_secs is None else 60), seconds
    found = predictions(str(result_uri))
    dead = helpers.read_failures(str(tmp_path / "failures"))
    # The 6th request kills it: 4 or 5 answered (2 in flight at once).
    assert statuses.count(200) in (4, 5) and len(found) == 10 * statuses.count(200)
    assert len(dead) == N - len(found)
    if max_failure_fraction is None:
        assert f"its endpoint {endpoint} was down: {len(dead)} records were not scored" \
            in message, message
        assert "python -m inference.replay" in message, message
    else:
        assert not_sent == len(dead)
    assert_match_local(found, taxi_model)
    assert {d.record for d in dead} | found.keys() == set(taxi_model.records)
    down = f"the endpoint {endpoint} is down (circuit open since "
    for letter in dead:  # sent and failed until the circuit opened, or never sent
        assert letter.stage == "inference" and letter.model == MODEL_NAME
        assert letter.error_type == "EndpointDown"
        assert letter.message.startswith(f"not sent: {down}") or (
            letter.message.startswith(f"no answer from POST {endpoint}/infer") and
            f"; not sent again: {down}" in letter.message), letter.message


def test_a_server_down_for_ten_seconds_loses_nothing(tmp_path, taxi_model, kserve_bin):
    """KServe killed at the 6th request and started again 10 s later, within the outage
    window: the requests in flight are retried until it answers; every record is
    predicted once, none is a dead letter, and the circuit never opened."""
    server = start(servers.KServe(tmp_path / "kserve", MODEL_NAME, taxi_model.estimator,
                                  kserve_bin))
    restarted = []

    def outage(number, method, path):
        if method == "POST" and number == 6:
            server.kill()
            restart = threading.Timer(10, lambda: restarted.append(server.start()))
            restart.start()
        return None

    try:
        with FaultProxy(server.port, outage) as proxy:
            result, failures = run(tmp_path, taxi_model, remote_config(
                f"{proxy.url}/v2/models/{MODEL_NAME}", max_batch_size=10,
                max_in_flight=2))
            statuses = proxy.statuses()
    finally:
        server.stop()

    found = predictions(result.uri)
    assert restarted and len(found) == N and not helpers.read_failures(failures)
    assert_match_local(found, taxi_model)
    assert statuses.count(0) >= 2  # attempts while it was down
    assert result.get_int_custom_property(f"{MODEL_NAME}.retries") >= statuses.count(0)
    assert result.get_float_custom_property(f"{MODEL_NAME}.circuit_open_seconds") == 0


def test_credentials_come_from_the_environment_and_stay_out_of_logs_and_dead_letters(
        tmp_path, taxi_model, model_server, monkeypatch, caplog):
    secret = "s3cr3t-t0ken-value"
    monkeypatch.setenv("TAXI_MODEL_TOKEN", secret)

    def unavailable_after_metadata(number, method, path):
        return 503 if method == "POST" and number > 4 else None

    with FaultProxy(model_server.port, unavailable_after_metadata, token=secret) as proxy:
        url = f"{proxy.url}/v2/models/{MODEL_NAME}"
        with pytest.raises(ConfigError, match="'NOT_SET_ANYWHERE' is not set"):
            models.create_handlers(remote_config(url, token_env="NOT_SET_ANYWHERE"))
        monkeypatch.setenv("WRONG_TOKEN", "wrong")
        with pytest.raises(ConfigError, match=r"was refused \(HTTP 401"):
            models.create_handlers(remote_config(url, token_env="WRONG_TOKEN"))
        with caplog.at_level(logging.INFO):
            result, failures = run(tmp_path, taxi_model, remote_config(
                url, max_in_flight=2, max_retries=0, outage_secs=1,
                token_env="TAXI_MODEL_TOKEN"), max_failure_fraction=1.0)
        seen = list(proxy.seen)

    assert {auth for method, _, _, auth in seen if method == "POST"} == {f"Bearer {secret}"}
    dead = helpers.read_failures(failures)
    assert dead and len(predictions(result.uri)) + len(dead) == N
    assert all("HTTP 503 Service Unavailable from POST" in d.message and
               "injected by the test proxy: 503" in d.message for d in dead)
    assert secret not in "".join(d.message for d in dead)
    assert secret not in caplog.text and "Bearer" not in caplog.text
    assert secret not in result.get_string_custom_property("figures")


@pytest.mark.parametrize("uri, options, message", [
    ("http://127.0.0.1:{closed}/v2/models/taxi", {}, r"cannot reach http://127\.0\.0\.1"),
    ("{server}/v2/models/no_such_model", {}, r"no model at .*no_such_model \(HTTP 404"),
    ("{server}/v2/models/taxi", {"protocol": "tfserving"},
     r"protocol 'tfserving' takes a uri like .*that is a 'v2' uri"),
    ("{server}/v1/models/taxi", {"protocol": "tfserving"},
     r"no model at .*/v1/models/taxi \(HTTP 404.*speaks protocol 'tfserving'"),
    ("{server}/v2/models/taxi", {"protocol": "grpc"}, r"needs options.protocol, one of"),
    ("{server}", {}, r"protocol 'v2' takes a uri like http\(s\)://<host>:<port>/v2/models/"),
    ("{server}/v2/models/taxi", {"token": "abc"}, r"credentials do not belong"),
])
def test_a_wrong_url_or_protocol_fails_before_beam_starts(tmp_path, taxi_model,
                                                          model_server, uri, options,
                                                          message):
    uri = uri.format(server=model_server.url, closed=servers.free_port())
    started = time.monotonic()
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, taxi_model, remote_config(uri, **options))
    assert time.monotonic() - started < 15
    assert not list(tmp_path.glob("bulk_inferrer-*/inference_result/*"))  # nothing ran
