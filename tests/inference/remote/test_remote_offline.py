"""Remote models without a model server: the options' checks, the wire formats, how a
batch splits into requests, the circuit breaker against a port where nothing listens, and
the Vertex AI path against a stand-in for its REST API on 127.0.0.1 (no network)."""
import dataclasses
import http.server
import json
import threading
import time
import urllib.parse

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.data.results import FilePosition
from inference.engine.models import create_handler
from inference.remote import protocols
from inference.remote.fanout import request_bounds
from tests import helpers
from tests.inference.remote.servers import free_port

FEATURES = ["a", "b"]


def model(uri="http://127.0.0.1:1/v2/models/m", **options) -> ModelConfig:
    return ModelConfig(name="m", framework="remote", uri=uri,
                       inputs=InputSpec(features=FEATURES), max_batch_size=2,
                       options={"protocol": "v2", "probe": False, **options})


@pytest.mark.parametrize("uri, options, message", [
    ("http://h/v2/models/m", {"max_in_flight": 0}, r"max_in_flight=0: must be an integer >= 1"),
    ("http://h/v2/models/m", {"timeout_secs": "10"}, r"timeout_secs='10': must be a positive"),
    ("http://h/v2/models/m", {"signature_name": "x"},
     r"options.signature_name does not apply to protocol 'v2'"),
    ("http://h/v2/models/m", {"api_key": "x"}, r"options.api_key: credentials do not belong"),
    ("http://h/v2/models/m", {"retries": 3}, r"unknown options.retries; protocol 'v2' takes"),
    ("http://user:pw@h/v2/models/m", {}, r"holds a user, password or query string"),
    ("http://h/v2/models/m?key=abc", {}, r"holds a user, password or query string"),
    ("ftp://h/v2/models/m", {}, r"is not an http\(s\) URL"),
    ("http://h/v2/models/m", {"token_env": "A", "token_file": "b"}, r"not both"),
    ("projects/p/endpoints/1", {"protocol": "vertex"}, r"protocol 'vertex' takes the endpoint's"),
    ("http://h/v1/models/m", {"protocol": "kserve-v1", "signature_name": "x"},
     r"options.signature_name does not apply to protocol 'kserve-v1'"),
    ("http://h/v1/models/m", {}, r"that is a 'tfserving' or 'kserve-v1' uri"),
    ("http://h/v2/models/m", {"outage_secs": 0}, r"outage_secs=0: must be a positive"),
    ("projects/p/locations/r/endpoints/1", {"protocol": "vertex", "private": True},
     r"options.private needs options.network"),
])
def test_options_are_checked_with_a_message_per_problem(uri, options, message):
    with pytest.raises(ConfigError, match=message):
        create_handler(model(uri, **options))


def test_a_batch_splits_into_as_few_near_equal_requests_as_fit():
    assert request_bounds(100, 25) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert request_bounds(70, 25) == [(0, 23), (23, 47), (47, 70)]
    assert request_bounds(3, 25) == [(0, 3)]
    handler = create_handler(model(max_in_flight=3))
    # 16 requests of 2 records for each of 3 slots; fewer where that passes 8,192 records.
    assert handler.batch_elements_kwargs()["max_batch_size"] == 96
    assert handler.batch_elements_kwargs()["min_batch_size"] == 96
    assert create_handler(dataclasses.replace(model(max_in_flight=4), max_batch_size=256)
                          ).batch_elements_kwargs()["max_batch_size"] == 8192
    assert create_handler(dataclasses.replace(model(max_in_flight=64), max_batch_size=256)
                          ).batch_elements_kwargs()["max_batch_size"] == 256 * 64


def test_open_inference_v2_wire_format():
    v2 = protocols.OpenInferenceV2("input-0", ["predict_proba"])
    body = v2.body(np.array([[1, 2], [3, 4]], np.float32), {"content_type": "np"})
    assert body == {"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP32",
                                "data": [1.0, 2.0, 3.0, 4.0]}],
                    "outputs": [{"name": "predict_proba"}],
                    "parameters": {"content_type": "np"}}
    named = v2.body({"a": np.array([[1], [2]], np.int64),
                     "b": np.array([[b"x"], [b"y"]], object)})
    assert [(t["name"], t["datatype"], t["data"]) for t in named["inputs"]] == [
        ("a", "INT64", [1, 2]), ("b", "BYTES", ["x", "y"])]
    outputs = v2.outputs({"outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP64",
                                       "data": [0.1, 0.9, 0.8, 0.2]}]}, 2)
    np.testing.assert_array_equal(outputs["p"], [[0.1, 0.9], [0.8, 0.2]])
    with pytest.raises(protocols.ProtocolError, match=r"shape \[3\] for 2 inputs"):
        v2.outputs({"outputs": [{"name": "p", "shape": [3], "datatype": "FP32",
                                 "data": [1, 2, 3]}]}, 2)
    assert v2.check_metadata({"name": "m", "versions": [], "inputs": []}) == ""
    assert "not an Open Inference Protocol" in v2.check_metadata(
        {"model_version_status": []})


def test_tf_serving_wire_format():
    tfs = protocols.TFServingREST("serving_default")
    assert tfs.infer_url("http://h:8501/v1/models/taxi") == "http://h:8501/v1/models/taxi:predict"
    assert tfs.body(np.array([[1.5, 2.0]], np.float32)) == {
        "instances": [[1.5, 2.0]], "signature_name": "serving_default"}
    assert tfs.body({"a": np.array([[1.0], [2.0]]), "b": np.array([[b"x"], [b"y"]], object)}
                    )["instances"] == [{"a": [1.0], "b": ["x"]}, {"a": [2.0], "b": ["y"]}]
    np.testing.assert_array_equal(
        tfs.outputs({"predictions": [[0.2], [0.7]]}, 2)["output_0"], [[0.2], [0.7]])
    named = tfs.outputs({"predictions": [{"score": 0.2, "label": 1},
                                         {"score": 0.7, "label": 0}]}, 2)
    np.testing.assert_array_equal(named["label"], [1, 0])
    with pytest.raises(protocols.ProtocolError, match="1 predictions for 2 instances"):
        tfs.outputs({"predictions": [[0.2]]}, 2)
    assert tfs.check_metadata({"model_version_status": [{"version": "1",
                                                         "state": "AVAILABLE"}]}) == ""
    assert "no version" in tfs.check_metadata({"model_version_status": [{"state": "LOADING"}]})
    assert "set options.protocol='kserve-v1'" in tfs.check_metadata({"name": "taxi",
                                                                     "ready": True})


def test_kserve_v1_wire_format():
    v1 = protocols.KServeV1(["proba"])
    assert v1.infer_url("http://h/v1/models/taxi") == "http://h/v1/models/taxi:predict"
    assert v1.body(np.array([[1.5, 2.0]], np.float32)) == {"instances": [[1.5, 2.0]]}
    np.testing.assert_array_equal(v1.outputs({"predictions": [[0.2, 0.8]]}, 1)["proba"],
                                  [[0.2, 0.8]])
    assert v1.check_metadata({"name": "taxi", "ready": True}) == ""
    assert "not ready" in v1.check_metadata({"name": "taxi", "ready": False})
    assert "not a KServe V1 model status" in v1.check_metadata(
        {"model_version_status": []})


def test_a_dead_port_opens_the_circuit_and_every_record_is_a_dead_letter_soon(tmp_path):
    """Nothing listens on the port: requests are retried until no success for
    outage_secs, then the circuit opens and every record ends a dead letter at once,
    saying the endpoint is down and its last error; the figures reach ML Metadata."""
    n = 120
    records = helpers.float_examples(np.random.default_rng(0).normal(size=(n, 2)), FEATURES)
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {"eval": records})
    url = f"http://127.0.0.1:{free_port()}/v2/models/m"
    config = model(url, max_in_flight=1, outage_secs=1)
    config.max_batch_size = 1
    started = time.monotonic()
    result = helpers.run_bulk_inferrer(
        tmp_path, {"examples": [examples]}, InferenceConfig(models=[config]),
        failures_uri=str(tmp_path / "failures"), max_failure_fraction="1.0")

    assert time.monotonic() - started < 60
    dead = helpers.read_failures(str(tmp_path / "failures"))
    assert len(dead) == n and {d.record for d in dead} == set(records)
    assert all(d.stage == "inference" and d.error_type == "EndpointDown" and
               f"the endpoint {url} is down" in d.message and
               "Connection refused" in d.message for d in dead)
    # The first batch's 16 requests were sent (and retried); the rest were not.
    assert sum(d.message.startswith("not sent: ") for d in dead) >= n - 16
    assert result.get_int_custom_property("m.circuit_open_records") == n
    assert result.get_float_custom_property("m.circuit_open_seconds") > 0
    assert result.get_int_custom_property("m.requests") >= 2  # the attempts of the outage


class VertexStandIn:
    """Answers what the Vertex AI SDK asks on 127.0.0.1: the endpoint's resource, and
    `:predict` (a score per instance: the sum of its values). `seen` keeps (method,
    path, body, Authorization) per request."""

    def __init__(self, endpoint_found=True):
        self.seen = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                stand_in.seen.append(("GET", self.path, None,
                                      self.headers.get("Authorization")))
                if not endpoint_found:
                    self._send(404, {"error": {"code": 404, "message": "Endpoint not found",
                                               "status": "NOT_FOUND"}})
                    return
                name = urllib.parse.urlsplit(self.path).path.split("/v1/")[1]
                self._send(200, {"name": name, "displayName": "taxi",
                                 "deployedModels": [{"id": "42", "model": "m"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.seen.append(("POST", self.path, body,
                                      self.headers.get("Authorization")))
                self._send(200, {"deployedModelId": "42", "predictions": [
                    {"score": sum(row)} for row in body["instances"]]})

            def _send(self, status, content):
                data = json.dumps(content).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


SERVICE_ACCOUNT = "inference@p.iam.gserviceaccount.com"


def service_account_key(path, token_uri: str) -> bytes:
    """Writes a service account key file of a fresh RSA key (tokens from `token_uri`, on
    127.0.0.1); returns the public key (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "1",
        "private_key": pem, "client_email": SERVICE_ACCOUNT, "client_id": "1",
        "token_uri": token_uri}))
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def vertex_sdk():
    """The Vertex AI SDK's process-wide settings (`aiplatform.init`), restored after the
    test."""
    from google.cloud.aiplatform import initializer
    saved = dict(vars(initializer.global_config))
    yield
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


def vertex_model(stand_in, key_file: str) -> ModelConfig:
    return ModelConfig(
        name="vx", framework="remote", uri="projects/p/locations/us-central1/endpoints/123",
        inputs=InputSpec(features=FEATURES), max_batch_size=2,
        options={"protocol": "vertex", "credentials_file": key_file, "max_in_flight": 2,
                 "api_endpoint": stand_in.url})


def test_vertex_ai_endpoint_through_beams_handler_offline(tmp_path, vertex_sdk):
    from apache_beam.ml.inference.vertex_ai_inference import VertexAIModelHandlerJSON
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    records = helpers.float_examples(x, FEATURES)
    with VertexStandIn() as vertex:
        public_key = service_account_key(tmp_path / "key.json", f"{vertex.url}/token")
        config = vertex_model(vertex, str(tmp_path / "key.json"))
        handler = create_handler(config)
        loaded = handler.load_model()
        result = handler.run_inference([(FilePosition("examples", 0), records)], loaded)[0]

    beam_handler = loaded._model._handler  # the remote model's Beam handler
    assert isinstance(beam_handler, VertexAIModelHandlerJSON)
    assert beam_handler.endpoint_name == "123" and beam_handler.location == "us-central1"
    assert result.records == records and not result.failures
    np.testing.assert_array_equal(result.outputs["score"], [3.0, 7.0, 11.0])
    predicts = [s for s in vertex.seen if s[1].split("?")[0].endswith(":predict")]
    assert [s[1].split("?")[0] for s in predicts] == [
        "/v1/projects/p/locations/us-central1/endpoints/123:predict"] * 2
    # 3 records, requests of at most max_batch_size (2), sent side by side
    assert sorted(s[2]["instances"] for s in predicts) == [[[1.0, 2.0], [3.0, 4.0]],
                                                          [[5.0, 6.0]]]
    # Credentials from the key file: each request carries a token signed with its key.
    for _, _, _, authorization in predicts:
        claims = jwt.decode(authorization.split("Bearer ")[1], certs={"1": public_key},
                            verify=True, audience=None)
        assert claims["iss"] == SERVICE_ACCOUNT


def test_a_missing_vertex_endpoint_fails_when_the_pipeline_is_built(tmp_path, vertex_sdk):
    with VertexStandIn(endpoint_found=False) as vertex:
        service_account_key(tmp_path / "key.json", f"{vertex.url}/token")
        config = vertex_model(vertex, str(tmp_path / "key.json"))
        with pytest.raises(ConfigError, match=r"model 'vx' \(remote, Vertex AI endpoint "
                                              r"projects/p/locations/us-central1/endpoints/"
                                              r"123\).*Endpoint not found"):
            create_handler(config)
