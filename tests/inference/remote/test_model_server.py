"""Remote models against a real model server (MLServer, scikit-learn runtime) on
127.0.0.1: the BulkInferrer executor scores through it with the local model's
predictions; quota errors slow a run down and lose nothing; a server killed mid-run
leaves dead letters, thresholded like any others; a wrong URL, model, protocol or
credential fails before Beam starts."""
import logging
import time

import numpy as np
import pytest
import tensorflow as tf

from inference import models
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from tests import helpers
from tests.inference.remote.conftest import FEATURES, MODEL_NAME
from tests.inference.remote.proxy import FaultProxy

N = 300


def remote_config(uri: str, max_batch_size: int = 32, **options) -> InferenceConfig:
    return InferenceConfig(models=[ModelConfig(
        name=MODEL_NAME, framework="remote", uri=uri, inputs=InputSpec(features=FEATURES),
        output_names=["predict_proba"], max_batch_size=max_batch_size,
        options={"protocol": "v2", **options})])


def run(tmp_path, taxi_model, config, max_failure_fraction=0.01):
    """The executor on the test's records; (InferenceResult artifact, failures folder)."""
    examples = helpers.examples_artifact(str(tmp_path / "examples"),
                                         {"eval": taxi_model.records})
    failures = str(tmp_path / "failures")
    result = helpers.run_bulk_inferrer(
        tmp_path, {"examples": [examples]}, config, failures_uri=failures,
        max_failure_fraction=str(max_failure_fraction))
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


def test_quota_errors_slow_the_run_down_and_lose_nothing(tmp_path, taxi_model,
                                                         model_server):
    """The first 8 inference requests (8 in flight at once) get 429 or 503: each is
    retried after Beam's backoff (2.5 to 5 s), and every record is predicted."""
    failing = {}

    def quota(number, method, path):
        if method == "POST" and len(failing) < 8:
            failing[number] = 429 if len(failing) % 2 else 503
            return failing[number]
        return None

    with FaultProxy(model_server.port, quota) as proxy:
        started = time.monotonic()
        result, failures = run(tmp_path, taxi_model, remote_config(
            f"{proxy.url}/v2/models/{MODEL_NAME}", max_batch_size=16, max_in_flight=8,
            max_retries=3, throttle_delay_secs=1))
        seconds = time.monotonic() - started
        statuses = proxy.statuses()

    found = predictions(result.uri)
    assert len(found) == N and not helpers.read_failures(failures)
    assert_match_local(found, taxi_model)
    assert statuses.count(429) == 4 and statuses.count(503) == 4
    assert seconds > 2.5  # at least one backoff
    requests = result.get_int_custom_property(f"{MODEL_NAME}.requests")
    assert requests == len(statuses)
    assert result.get_int_custom_property(f"{MODEL_NAME}.retries") >= 8
    assert result.get_int_custom_property(f"{MODEL_NAME}.failed_requests") == 0
    # Beam's throttler looks back 1 s (throttle_window_secs) and the retries come 2.5 s
    # or more after the failures: whether it held any back is chance.
    assert result.get_int_custom_property(f"{MODEL_NAME}.throttled_seconds") >= 0


@pytest.mark.parametrize("max_failure_fraction", [1.0, 0.01])
def test_a_server_killed_mid_run_leaves_dead_letters(tmp_path, taxi_model, fresh_server,
                                                     max_failure_fraction):
    """At the 6th request the server is killed: the records of every request
    still unanswered after its retry end as dead letters (stage inference, with why);
    the run completes, or fails when they exceed max_failure_fraction."""
    inferred = []

    def kill_at_six(number, method, path):
        if method == "POST":
            inferred.append(number)
            if len(inferred) == 6:
                fresh_server.kill()
        return None

    # Batches of 4 requests of 25 records: the 2nd batch loses 1 or 2, the 3rd all 4.
    config = remote_config(None, max_batch_size=25, max_in_flight=4, max_retries=1,
                           throttle_delay_secs=1)
    with FaultProxy(fresh_server.port, kill_at_six) as proxy:
        config.models[0].uri = f"{proxy.url}/v2/models/{MODEL_NAME}"
        if max_failure_fraction < 1:
            with pytest.raises(RuntimeError, match=r"records failed.* at inference"):
                run(tmp_path, taxi_model, config, max_failure_fraction)
            result_uri = next(tmp_path.glob("bulk_inferrer-*/inference_result"))
        else:
            result_uri = run(tmp_path, taxi_model, config, max_failure_fraction)[0].uri
        statuses = proxy.statuses()

    found = predictions(str(result_uri)) if statuses.count(200) else {}
    dead = helpers.read_failures(str(tmp_path / "failures"))
    assert 4 <= statuses.count(200) <= 5 and len(found) >= 100 and len(dead) >= 100
    assert len(found) + len(dead) == N
    assert_match_local(found, taxi_model)
    assert {d.record for d in dead} | found.keys() == set(taxi_model.records)
    for letter in dead:
        assert letter.stage == "inference" and letter.model == MODEL_NAME
        assert letter.error_type == "RemoteInferenceError"
        assert letter.message.startswith(f"no answer from POST {proxy.url}/v2/models/")


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
                url, max_in_flight=2, max_retries=0, throttle_delay_secs=1,
                token_env="TAXI_MODEL_TOKEN"), 1.0)
        seen = list(proxy.seen)

    assert {auth for method, _, _, auth in seen if method == "POST"} == {f"Bearer {secret}"}
    dead = helpers.read_failures(failures)
    assert dead and len(predictions(result.uri)) + len(dead) == N
    assert all(d.message.startswith("HTTP 503 Service Unavailable from POST") and
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
    from tests.inference.remote.mlserver import free_port
    uri = uri.format(server=model_server.url, closed=free_port())
    started = time.monotonic()
    with pytest.raises(ConfigError, match=message):
        run(tmp_path, taxi_model, remote_config(uri, **options))
    assert time.monotonic() - started < 15
    assert not list(tmp_path.glob("bulk_inferrer-*/inference_result/*"))  # nothing ran
