"""The run report: its figures equal the artifact's (what ML Metadata records), its
comparisons are those of the PredictionLogs, and a real browser renders every section."""
import html
import os

import numpy as np
import pytest
import tensorflow as tf
import torch
from tfx.types import standard_artifacts

from components.bulk_inferrer import executor, samples, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from tests import browser, helpers
from tests.runners.conftest import REPO

FEATURES = ["f0", "f1", "f2"]
N = 150
GROUPS = ["a", "b", "c"]


class Logistic(torch.nn.Module):
    """sigmoid(weight * sum(features) + bias): a probability per record."""

    def __init__(self, weight: float, bias: float):
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x):
        return torch.sigmoid(self.weight * x.sum(dim=1, keepdim=True) + self.bias)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    x = np.random.RandomState(5).rand(N, 3)
    records = [helpers.example({"f0": [r[0]], "f1": [r[1]], "f2": [r[2]], "id": [i],
                                "group": [GROUPS[i % 3]]}) for i, r in enumerate(x)]
    # A record without f2 (a preprocess failure) and one whose group no model serves.
    records.append(helpers.example({"f0": [1.0], "f1": [1.0], "id": [N], "group": ["a"]}))
    records.append(helpers.example({"f0": [1.0], "f1": [1.0], "f2": [1.0], "id": [N + 1],
                                    "group": ["unknown"]}))
    examples = helpers.examples_artifact(str(root / "examples"), {"eval": records})
    uris = {}
    for name, weight, bias in (("a", 1.0, -1.5), ("b", 1.3, -1.9), ("c", 0.8, -1.1)):
        uris[name] = str(root / f"{name}.pt")
        torch.jit.save(torch.jit.script(Logistic(weight, bias)), uris[name])
    return examples, uris, root


def _run(setup, name: str, config: InferenceConfig):
    """Runs the executor with every output; returns them by key."""
    examples, _, root = setup
    run_dir = root / name
    outputs = {
        spec.INFERENCE_RESULT_KEY: helpers.output_artifact(
            standard_artifacts.InferenceResult, str(run_dir / "inference_result")),
        spec.FAILURES_KEY: helpers.output_artifact(spec.InferenceFailures,
                                                   str(run_dir / "failures")),
        spec.REPORT_KEY: helpers.output_artifact(spec.HTML, str(run_dir / "report"))}
    outputs[spec.REPORT_KEY].uri = str(run_dir / "report" / "value")
    executor.Executor(helpers.beam_context(root, name)).Do(
        {spec.EXAMPLES_KEY: [examples]}, {k: [v] for k, v in outputs.items()},
        {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
         spec.INFERENCE_CONFIG_KEY: config.to_json(), spec.MAX_FAILURE_FRACTION_KEY: 0.05})
    return outputs


def _model(name, uris, **kwargs):
    return ModelConfig(name=name, uri=uris[name], inputs=InputSpec(features=FEATURES),
                       max_batch_size=16, **kwargs)


@pytest.fixture(scope="module")
def shadow(setup):
    _, uris, _ = setup
    return _run(setup, "shadow", InferenceConfig(models=[_model("a", uris),
                                                         _model("b", uris)]))


def _page(outputs):
    result = outputs[spec.INFERENCE_RESULT_KEY]
    path = result.get_string_custom_property("report")
    assert path == os.path.join(result.uri, "report.html")
    with open(path) as f:
        return path, f.read()


def _scores(result, model):
    """Input id -> the model's probability, from its PredictionLogs."""
    scores = {}
    for log in helpers.read_prediction_logs(f"{result.uri}/{model}/prediction_logs-*.gz"):
        request = tf.train.Example.FromString(
            log.predict_log.request.inputs["examples"].string_val[0])
        scores[request.features.feature["id"].int64_list.value[0]] = tf.make_ndarray(
            log.predict_log.response.outputs["output_0"]).item()
    return scores


def _check_run_figures(figures, artifact, models):
    """The report's run-level and per-model figures are the artifact's custom properties."""
    for name in ("examples_in", "predictions", "failures"):
        assert figures[name] == artifact.get_int_custom_property(name), name
    for model in models:
        for name in ("examples_in", "predictions", "failures", "model_loads", "batches"):
            assert figures[f"{model}.{name}"] == artifact.get_int_custom_property(
                f"{model}.{name}"), (model, name)


def test_shadow_report_compares_the_models_on_the_same_records(shadow):
    result = shadow[spec.INFERENCE_RESULT_KEY]
    _, page = _page(shadow)
    figures = browser.parse(page).figures
    _check_run_figures(figures, result, ("a", "b"))
    a, b = _scores(result, "a"), _scores(result, "b")
    assert len(a) == len(b) == N + 1  # every record but the one without f2
    assert figures["shadow.a.b.paired"] == N + 1
    same = np.mean([(a[i] >= 0.5) == (b[i] >= 0.5) for i in a])
    assert 0 < same < 1 and figures["shadow.a.b.agreement"] == pytest.approx(same, abs=1e-6)
    # The failure of each model, by stage, with its message in the sample.
    assert figures["failures.a.preprocess"] == figures["failures.b.preprocess"] == 1
    assert "feature &#x27;f2&#x27; is missing" in page
    # The same page is the HTML artifact the Vertex AI console opens.
    with open(shadow[spec.REPORT_KEY].uri) as f:
        assert f.read() == page
    assert shadow[spec.FAILURES_KEY].get_string_custom_property("report") == \
        result.get_string_custom_property("report")


def test_report_renders_every_section_in_a_browser(shadow, tmp_path):
    path, page = _page(shadow)
    dom = browser.dump_dom(path, str(tmp_path / "profile"))
    parsed = browser.parse(dom)
    assert parsed.sections == list(("summary", "predictions", "drift", "comparison",
                                    "failures", "performance", "samples"))
    assert parsed.figures == browser.parse(page).figures
    assert parsed.images >= 5  # 2 histograms, the joint, batch sizes and latencies
    png = os.path.join(REPO, "outputs", "test-screenshots", "report-shadow.png")
    pixels = browser.screenshot(path, png, str(tmp_path / "profile"))
    assert pixels.shape[0] >= 2000 and pixels.std() > 20  # not a blank page
    # The plots are there: a good share of the page is neither white nor text-grey.
    colored = np.abs(pixels.astype(int) - pixels.mean(axis=2, keepdims=True)).max(axis=2)
    assert (colored > 40).mean() > 0.01


def test_ab_report_shows_the_traffic_split(setup):
    _, uris, _ = setup
    outputs = _run(setup, "ab", InferenceConfig(
        models=[_model("a", uris), _model("b", uris)], routing="ab", fractions=[0.3, 0.7],
        routing_feature="id"))
    result = outputs[spec.INFERENCE_RESULT_KEY]
    parsed = browser.parse(_page(outputs)[1])
    figures = parsed.figures
    _check_run_figures(figures, result, ("a", "b"))
    for model in ("a", "b"):
        assert figures[f"ab.{model}.examples_in"] == \
            result.get_int_custom_property(f"{model}.examples_in")
    assert figures["ab.a.share"] + figures["ab.b.share"] == pytest.approx(1)
    assert 0.15 < figures["ab.a.share"] < 0.45
    # Split bars, each model's histogram, the arms overlaid, batch sizes and latencies.
    assert parsed.images >= 6


def test_keyed_report_counts_records_per_key(setup):
    _, uris, _ = setup
    outputs = _run(setup, "keyed", InferenceConfig(
        models=[_model(name, uris, keys=[group]) for name, group in zip("abc", GROUPS)],
        routing="keyed", routing_feature="group"))
    result = outputs[spec.INFERENCE_RESULT_KEY]
    figures = browser.parse(_page(outputs)[1]).figures
    _check_run_figures(figures, result, ("a", "b", "c"))
    for name, group in zip("abc", GROUPS):  # one key per model: its records routed there
        logged = len(helpers.read_prediction_logs(f"{result.uri}/{name}/prediction_logs-*"))
        assert figures[f"keyed.key.{group}"] == \
            result.get_int_custom_property(f"{name}.examples_in")
        assert figures[f"keyed.{name}.predictions"] == logged
    assert figures["keyed.unrouted"] == 1


def test_samples_are_bounded_and_pair_up_across_models(shadow):
    result = shadow[spec.INFERENCE_RESULT_KEY]
    files = {m: tf.io.gfile.glob(f"{result.uri}/{m}/prediction_logs-*") for m in "ab"}
    small = samples.read_predictions(files["a"], size=10, scan_limit=60)
    assert small.scanned == 60 and len(small.predictions) == 10
    full = {m: samples.read_predictions(f, size=40) for m, f in files.items()}
    assert full["a"].scanned == N + 1
    # The bottom-k sample by input hash: both models keep the same records.
    assert set(full["a"].predictions) == set(full["b"].predictions)
    assert {p.request for p in full["a"].predictions.values()} == \
        {p.request for p in full["b"].predictions.values()}


def test_notebook_shows_the_report_and_samples_of_each_output(shadow, tmp_path):
    """InteractiveContext.show, in a real IPython shell, renders through TFX's registry."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from tfx import types
    from tfx.orchestration.experimental.interactive.interactive_context import InteractiveContext

    from components import BulkInferrer  # noqa: F401  (as a notebook does)
    InteractiveShell.instance()
    context = InteractiveContext(pipeline_root=str(tmp_path / "root"))
    shown = {}
    for key, kind in ((spec.INFERENCE_RESULT_KEY, standard_artifacts.InferenceResult),
                      (spec.FAILURES_KEY, spec.InferenceFailures)):
        channel = types.Channel(type=kind)
        channel.set_artifacts([shadow[key]])
        with capture_output() as captured:
            context.show(channel)
        shown[key] = "".join(o.data.get("text/html", "") for o in captured.outputs)
    _, page = _page(shadow)
    for html_text in shown.values():
        assert 'iframe srcdoc="' in html_text
        frame = html_text.split('iframe srcdoc="', 1)[1].split('"', 1)[0]
        assert html.unescape(frame) == page
    predictions = shown[spec.INFERENCE_RESULT_KEY].split("</iframe>", 1)[1]
    assert predictions.count("<tr><td>a</td><td>eval</td>") == 10
    assert predictions.count("<tr><td>b</td><td>eval</td>") == 10
    dead_letters = shown[spec.FAILURES_KEY].split("</iframe>", 1)[1]
    assert dead_letters.count("<td>preprocess</td>") == 2 and "f2" in dead_letters


@pytest.mark.parametrize("value", [
    np.array([[0.25]], np.float32), np.arange(6, dtype=np.float32).reshape(2, 3),
    np.array([1.5, -2.0]), np.array([[7]], np.int64), np.array([3, 4], np.int32),
    np.array([b"a", b"b"]), np.array(True)])
def test_a_sampled_output_reads_as_tf_make_ndarray_reads_it(value):
    """Sampled PredictionLogs' outputs are read without tf.make_ndarray's per-call work,
    to the same values: packed or as a typed list, or a filled shape."""
    from tensorflow_serving.apis import prediction_log_pb2
    tensors = [tf.make_tensor_proto(value)]
    filled = tf.make_tensor_proto(value)
    if filled.tensor_content and value.dtype in (np.float32, np.int64):
        filled.ClearField("tensor_content")  # one value, standing for the whole shape
        getattr(filled, "float_val" if value.dtype == np.float32 else "int64_val").append(
            value.ravel()[0].item())
        tensors.append(filled)
    for tensor in tensors:
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.response.outputs["y"].CopyFrom(tensor)
        got = samples.outputs(log)["y"]
        want = tf.make_ndarray(tensor).reshape(-1)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
