"""Every framework module on real models built here, through the real BulkInferrer executor.

For each framework: the PredictionLogs hold one prediction per example, equal to calling
the framework directly on the same inputs, and detection picks the framework from the
files when the configuration leaves it unset. Models that share a data shape run in one
executor call (several models per run, as the component allows) to keep this file fast.
"""
import importlib.util
import os

import joblib
import numpy as np
import pytest
import tensorflow as tf
import torch
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from components.bulk_inferrer import spec
from inference import detection, frameworks
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.models import create_handler
from tests import helpers

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

FEATURES = ["f0", "f1", "f2", "f3"]
TOKENS = ["input_ids", "attention_mask"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "the a an movie film plot actor scene was is were very really not good great fine "
    "bad awful dull long short fun").split()
TEXTS = ["the movie was good", "a really bad film", "the plot is very dull",
         "great actor", "not fun", "the scene was long", "an awful plot",
         "fine", "the film was not good", "really great fun", "short and dull", "movie"]
TOL = dict(rtol=1e-5, atol=1e-5)


# --- data: one examples artifact per data shape, shared by the module ---------------------

class Data:
    def __init__(self, examples, records, **arrays):
        self.examples = examples
        self.index = {record: i for i, record in enumerate(records)}
        assert len(self.index) == len(records), "records must be distinct"
        self.__dict__.update(arrays)

    def __len__(self):
        return len(self.index)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """60 examples of 4 float features, and labels to fit models on."""
    rng = np.random.RandomState(0)
    x = rng.rand(60, 4).astype(np.float32)
    y = (x @ np.array([1.0, -1.0, 0.5, 0.2]) > 0.3).astype(np.int64)
    records = helpers.float_examples(x, FEATURES)
    examples = helpers.examples_artifact(str(tmp_path_factory.mktemp("tabular")),
                                         {"train": records})
    return Data(examples, records, x=x, y=y)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Token-id sequences of 1..12 tokens (int64 var-len features) and their masks."""
    rng = np.random.RandomState(1)
    ids = [rng.randint(5, len(VOCAB), size=rng.randint(1, 13)).astype(np.int64)
           for _ in range(40)]
    records = [helpers.example({"input_ids": seq, "attention_mask": np.ones_like(seq)})
               for seq in ids]
    examples = helpers.examples_artifact(str(tmp_path_factory.mktemp("tokens")),
                                         {"train": records})
    return Data(examples, records, ids=ids)


# --- models shared by several tests --------------------------------------------------------

@pytest.fixture(scope="module")
def logistic(tabular):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression().fit(tabular.x, tabular.y)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny BERT classifier and its tokenizer, built here (nothing downloaded)."""
    import transformers
    artifact = helpers.model_artifact(str(tmp_path_factory.mktemp("bert")))
    folder = helpers.serving_dir(artifact)
    vocab = os.path.join(str(tmp_path_factory.mktemp("vocab")), "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=vocab).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=16,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return artifact, folder


# --- running the executor and reading what it wrote ----------------------------------------

def _run(tmp_path, data, models, model_artifact=None):
    """Runs the BulkInferrer executor; returns {model name: {example index: outputs}}.

    outputs: {output name: array} from the model's PredictionLog (batch dim dropped).
    """
    inputs = {spec.EXAMPLES_KEY: [data.examples]}
    if model_artifact is not None:
        inputs[spec.MODEL_KEY] = [model_artifact]
    output = helpers.run_bulk_inferrer(tmp_path, inputs, InferenceConfig(models=models))
    if output.has_custom_property("failures"):
        assert output.get_int_custom_property("failures") == 0
    results = {}
    for model in models:
        folder = output.uri if len(models) == 1 else os.path.join(output.uri, model.name)
        logs = helpers.read_prediction_logs(f"{folder}/prediction_logs-*.gz")
        by_index = {}
        for log in logs:
            request, response = log.predict_log.request, log.predict_log.response
            assert request.model_spec.name == model.name
            record = request.inputs["examples"].string_val[0]
            by_index[data.index[record]] = {
                name: tf.make_ndarray(tensor)[0] for name, tensor in response.outputs.items()}
        assert len(logs) == len(by_index) == len(data), model.name
        results[model.name] = by_index
    return results


def _assert_equal(got, expected, tol=None):
    """got: {index: {output: array}}; expected: {output: [examples, ...] array}."""
    for i, outputs in got.items():
        assert set(outputs) == set(expected), (sorted(outputs), sorted(expected))
        for name, want in expected.items():
            if np.asarray(want).dtype.kind in "OSU":
                assert outputs[name] == want[i], (name, i)
            else:
                np.testing.assert_allclose(outputs[name], want[i], **(tol or TOL),
                                           err_msg=f"{name}[{i}]")


def results_of(by_index, output="output_0"):
    """One output of every example, in example order."""
    return np.stack([by_index[i][output] for i in range(len(by_index))])


def _serving(tmp_path_factory, name):
    artifact = helpers.model_artifact(str(tmp_path_factory.mktemp(name)))
    return artifact, helpers.serving_dir(artifact)


# --- scikit-learn ----------------------------------------------------------------------------

def test_sklearn_joblib(tmp_path, tmp_path_factory, tabular, logistic):
    artifact, folder = _serving(tmp_path_factory, "sklearn")
    joblib.dump(logistic, os.path.join(folder, "model.joblib"))
    assert detection.resolve(folder) == ("sklearn", os.path.join(folder, "model.joblib"))
    inputs = InputSpec(features=FEATURES)
    results = _run(tmp_path, tabular, [
        ModelConfig(name="label", inputs=inputs, options={"trusted": True}),
        ModelConfig(name="proba", inputs=inputs,
                    options={"trusted": True, "method": "predict_proba"}),
    ], artifact)
    _assert_equal(results["label"], {"output_0": logistic.predict(tabular.x)})
    _assert_equal(results["proba"], {"output_0": logistic.predict_proba(tabular.x)})


@pytest.mark.parametrize("file_name", ["model.joblib", "model.pkl"])
def test_sklearn_pickle_needs_trust(tmp_path, tabular, logistic, file_name):
    path = str(tmp_path / file_name)
    joblib.dump(logistic, path)
    model = ModelConfig(uri=path, inputs=InputSpec(features=FEATURES))
    with pytest.raises(ConfigError, match=r"(?s)run whatever code.*'trusted': True.*ONNX"):
        helpers.run_bulk_inferrer(tmp_path, {spec.EXAMPLES_KEY: [tabular.examples]},
                                  InferenceConfig(models=[model]))
    with pytest.raises(ConfigError, match="trusted"):
        # Only True itself opts in.
        create_handler(ModelConfig(framework="sklearn", inputs=InputSpec(features=FEATURES),
                                   options={"trusted": "yes"}), path)


def test_sklearn_skops_needs_the_package(tmp_path):
    if importlib.util.find_spec("skops") is not None:
        pytest.skip("skops is installed")
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK")
    assert detection.resolve(str(path))[0] == "sklearn"
    with pytest.raises(ConfigError, match="install the `skops` package"):
        create_handler(ModelConfig(framework="sklearn", inputs=InputSpec(features=FEATURES)),
                       str(path))


# --- ONNX --------------------------------------------------------------------------------------

def _ort_run(path, feeds):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_onnx_from_sklearn(tmp_path, tmp_path_factory, tabular, logistic):
    from skl2onnx import to_onnx
    artifact, folder = _serving(tmp_path_factory, "skl2onnx")
    path = os.path.join(folder, "model.onnx")
    # The default ZipMap output: one {class: probability} map per example.
    with open(path, "wb") as f:
        f.write(to_onnx(logistic, tabular.x[:1]).SerializeToString())
    assert detection.resolve(folder) == ("onnx", path)
    results = _run(tmp_path, tabular, [ModelConfig(inputs=InputSpec(features=FEATURES))],
                   artifact)["model"]

    direct = _ort_run(path, {"X": tabular.x})
    expected = {"output_label": direct["output_label"],
                "output_probability": np.array([list(p.values())
                                                for p in direct["output_probability"]])}
    _assert_equal(results, expected)
    _assert_equal(results, {"output_label": logistic.predict(tabular.x),
                            "output_probability": logistic.predict_proba(tabular.x)},
                  tol=dict(rtol=1e-4, atol=1e-5))


class _Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


class _TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 3)

    def forward(self, f0, f2):
        both = torch.cat([f0, f2], dim=1)
        return self.linear(both), both.sum(dim=1)


def test_pytorch_state_dict_and_torchscript_on_the_device_the_weights_are_on(
        tmp_path, tmp_path_factory, tabular):
    """device="GPU": on a GPU the batch goes to the weights there; without one, Beam's
    handler loads the weights onto the CPU and the batch follows them."""
    folder = str(tmp_path_factory.mktemp("torch"))
    torch.manual_seed(0)
    mlp = _Mlp().eval()
    torch.save(mlp.state_dict(), f"{folder}/weights.pt")
    torch.jit.save(torch.jit.script(mlp), f"{folder}/model.pt")
    inputs = InputSpec(features=FEATURES)
    results = _run(tmp_path, tabular, [
        ModelConfig(name="state_dict", uri=f"{folder}/weights.pt", framework="pytorch",
                    inputs=inputs, device="GPU",
                    options={"model_class": f"{__name__}._Mlp"}),
        ModelConfig(name="torchscript", uri=f"{folder}/model.pt", inputs=inputs,
                    device="GPU", max_batch_size=16),
    ])

    with torch.no_grad():
        expected = {"output_0": mlp(torch.from_numpy(tabular.x)).numpy()}
    _assert_equal(results["state_dict"], expected)
    _assert_equal(results["torchscript"], expected)


def test_onnx_from_torch_stacked_and_dict(tmp_path, tmp_path_factory, tabular):
    folder = str(tmp_path_factory.mktemp("torch2onnx"))
    torch.manual_seed(0)
    mlp, two = _Mlp().eval(), _TwoInputs().eval()
    stacked_path, dict_path = f"{folder}/mlp.onnx", f"{folder}/two_inputs.onnx"
    # torch 2.14 exports with the dynamo exporter by default, which needs onnxscript;
    # the TorchScript exporter (dynamo=False) does not.
    torch.onnx.export(mlp, (torch.zeros(1, 4),), stacked_path, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    torch.onnx.export(two, (torch.zeros(1, 1), torch.zeros(1, 1)), dict_path, dynamo=False,
                      input_names=["f0", "f2"], output_names=["scores", "total"],
                      dynamic_axes={n: {0: "batch"} for n in ("f0", "f2", "scores", "total")})
    assert detection.resolve(stacked_path)[0] == "onnx"
    results = _run(tmp_path, tabular, [
        ModelConfig(name="stacked", uri=stacked_path, inputs=InputSpec(features=FEATURES),
                    max_batch_size=16),
        ModelConfig(name="dict", uri=dict_path,
                    inputs=InputSpec(features=["f0", "f2"], layout="dict")),
    ])

    x = tabular.x
    _assert_equal(results["stacked"], _ort_run(stacked_path, {"x": x}))
    _assert_equal(results["dict"], _ort_run(dict_path, {"f0": x[:, :1], "f2": x[:, 2:3]}))
    with torch.no_grad():
        scores, total = two(torch.from_numpy(x[:, :1]), torch.from_numpy(x[:, 2:3]))
        _assert_equal(results["stacked"], {"logits": mlp(torch.from_numpy(x)).numpy()})
    _assert_equal(results["dict"], {"scores": scores.numpy(), "total": total.numpy()})


# --- XGBoost -----------------------------------------------------------------------------------

def test_xgboost_json_and_ubj(tmp_path, tmp_path_factory, tabular):
    import xgboost
    classifier = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(tabular.x, tabular.y)
    folders = {}
    for fmt in ("json", "ubj"):
        folders[fmt] = str(tmp_path_factory.mktemp(f"xgboost_{fmt}"))
        classifier.save_model(f"{folders[fmt]}/model.{fmt}")
        assert detection.resolve(folders[fmt]) == ("xgboost", f"{folders[fmt]}/model.{fmt}")
    inputs = InputSpec(features=FEATURES)
    results = _run(tmp_path, tabular, [
        ModelConfig(name="json", uri=folders["json"], inputs=inputs,
                    options={"method": "predict_proba"}),
        ModelConfig(name="ubj", uri=folders["ubj"], inputs=inputs),
        ModelConfig(name="booster", uri=folders["ubj"], inputs=inputs,
                    options={"model_class": "booster"}),
    ])
    booster = xgboost.Booster()
    booster.load_model(f"{folders['ubj']}/model.ubj")
    _assert_equal(results["json"], {"output_0": classifier.predict_proba(tabular.x)})
    _assert_equal(results["ubj"], {"output_0": classifier.predict(tabular.x)})
    _assert_equal(results["booster"],
                  {"output_0": booster.predict(xgboost.DMatrix(tabular.x))})


# --- Keras / TF SavedModel on dense tensors ----------------------------------------------------

def test_keras_file_and_saved_model(tmp_path, tmp_path_factory, tabular):
    import keras
    keras.utils.set_random_seed(0)
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                   keras.layers.Dense(2)])
    f0, f2 = keras.Input((1,), name="f0"), keras.Input((1,), name="f2")
    functional = keras.Model({"f0": f0, "f2": f2},
                             keras.layers.Dense(3)(keras.layers.Concatenate()([f0, f2])))
    root = str(tmp_path_factory.mktemp("keras"))
    paths = {"file": f"{root}/file/model.keras", "saved_model": f"{root}/saved_model",
             "dict_file": f"{root}/dict_file/model.keras", "dict_saved_model": f"{root}/dsm"}
    for key in ("file", "dict_file"):
        os.makedirs(os.path.dirname(paths[key]))
    sequential.save(paths["file"])
    sequential.export(paths["saved_model"])
    functional.save(paths["dict_file"])
    functional.export(paths["dict_saved_model"])
    assert detection.resolve(os.path.dirname(paths["file"])) == ("keras", paths["file"])
    assert detection.resolve(paths["saved_model"]) == ("keras", paths["saved_model"])
    # Set explicitly, a folder holding a .keras file resolves to the file.
    assert detection.resolve(os.path.dirname(paths["file"]), "keras")[1] == paths["file"]

    stacked, keyed = InputSpec(features=FEATURES), InputSpec(features=["f0", "f2"],
                                                             layout="dict")
    results = _run(tmp_path, tabular, [
        ModelConfig(name="file", uri=paths["file"], inputs=stacked),
        ModelConfig(name="saved_model", uri=paths["saved_model"], inputs=stacked),
        ModelConfig(name="dict_file", uri=paths["dict_file"], inputs=keyed),
        ModelConfig(name="dict_saved_model", uri=paths["dict_saved_model"], inputs=keyed,
                    options={"signature_name": "serving_default"}),
    ])
    x = tabular.x
    expected = {"output_0": sequential(x).numpy()}
    _assert_equal(results["file"], expected)
    _assert_equal(results["saved_model"], expected)
    expected = {"output_0": functional({"f0": x[:, :1], "f2": x[:, 2:3]}).numpy()}
    _assert_equal(results["dict_file"], expected)
    _assert_equal(results["dict_saved_model"], expected)


def test_keras_saved_model_signature_mismatch_is_clear(tmp_path, tabular):
    import keras
    f0, f2 = keras.Input((1,), name="f0"), keras.Input((1,), name="f2")
    keras.Model({"f0": f0, "f2": f2}, keras.layers.Add()([f0, f2])).export(str(tmp_path / "sm"))
    spec = ModelConfig(framework="keras", inputs=InputSpec(features=FEATURES))
    with pytest.raises(ConfigError, match=r"takes \['f0', 'f2'\]: use inputs.layout='dict'"):
        frameworks.get("keras").load(str(tmp_path / "sm"), spec)


# --- Hugging Face ------------------------------------------------------------------------------

def test_huggingface_pipeline_task_through_beam(tmp_path, tmp_path_factory):
    """A task the text path does not run (question answering) is Beam's
    HuggingFacePipelineModelHandler's: one {question, context} dict per example."""
    import transformers
    artifact, folder = _serving(tmp_path_factory, "qa")
    vocab = os.path.join(str(tmp_path_factory.mktemp("qa_vocab")), "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=vocab).save_pretrained(folder)
    torch.manual_seed(0)
    transformers.BertForQuestionAnswering(transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    questions = [{"question": "the plot", "context": text} for text in TEXTS]
    records = [helpers.example(q) for q in questions]
    data = Data(helpers.examples_artifact(str(tmp_path_factory.mktemp("qa_data")),
                                          {"train": records}), records)
    results = _run(tmp_path, data, [ModelConfig(
        name="qa", framework="huggingface",
        inputs=InputSpec(features=["question", "context"], dtype="bytes", layout="dict"),
        options={"task": "question-answering"})], artifact)["qa"]

    direct = transformers.pipeline(task="question-answering", model=folder,
                                   device="cpu")(questions)
    _assert_equal(results, {"answer": np.array([p["answer"].encode() for p in direct],
                                               dtype=object),
                            "score": np.array([p["score"] for p in direct]),
                            "start": np.array([p["start"] for p in direct]),
                            "end": np.array([p["end"] for p in direct])})


def _padded(ids, width=None, truncate=False):
    width = width or max(len(seq) for seq in ids)
    out = np.zeros((len(ids), width), np.int64)
    for row, seq in zip(out, ids):
        seq = seq[:width] if truncate else seq
        row[:len(seq)] = seq
    return out


def test_huggingface_tensors(tmp_path, tokens, tiny_bert):
    import transformers
    artifact, folder = tiny_bert
    options = {"model_class": "transformers.AutoModelForSequenceClassification"}
    results = _run(tmp_path, tokens, [
        # Keyword tensors (input_ids, attention_mask), padded to each batch's longest.
        ModelConfig(name="keyed", framework="huggingface", max_batch_size=8, options=options,
                    inputs=InputSpec(features=TOKENS, dtype="int64", layout="dict",
                                     padding="longest")),
        # One positional tensor (input_ids, no mask), padded to a fixed length.
        ModelConfig(name="ids", framework="huggingface", max_batch_size=8, options=options,
                    inputs=InputSpec(features=["input_ids"], dtype="int64",
                                     padding="max_length", max_length=16)),
    ], artifact)

    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    ids, ids16 = _padded(tokens.ids), _padded(tokens.ids, 16)
    with torch.no_grad():
        keyed = model(input_ids=torch.from_numpy(ids),
                      attention_mask=torch.from_numpy((ids != 0).astype(np.int64))).logits
        positional = model(torch.from_numpy(ids16)).logits
    _assert_equal(results["keyed"], {"logits": keyed.numpy()})
    _assert_equal(results["ids"], {"logits": positional.numpy()})


# --- variable-length token ids: PyTorch and ONNX, padded per batch or to max_length ---------

class _MeanEmbedding(torch.nn.Module):
    """Embedding + mean pooling over the non-padding tokens + a linear head."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(len(VOCAB), 8, padding_idx=0)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, ids):
        mask = (ids != 0).unsqueeze(-1).float()
        pooled = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


def test_variable_length_token_ids(tmp_path, tmp_path_factory, tokens):
    folder = str(tmp_path_factory.mktemp("varlen"))
    torch.manual_seed(0)
    eager = _MeanEmbedding().eval()
    module = torch.jit.script(eager)
    torch.jit.save(module, f"{folder}/model.pt")
    torch.onnx.export(eager, (torch.ones(2, 5, dtype=torch.int64),), f"{folder}/model.onnx",
                      dynamo=False, input_names=["ids"], output_names=["logits"],
                      dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}})
    assert detection.resolve(f"{folder}/model.pt")[0] == "pytorch"
    longest = InputSpec(features=["input_ids"], dtype="int64", padding="longest")
    max_length = InputSpec(features=["input_ids"], dtype="int64", padding="max_length",
                           max_length=6)
    models = [ModelConfig(name=f"{runtime}_{name}", uri=f"{folder}/model.{suffix}",
                          inputs=spec_, max_batch_size=8)
              for runtime, suffix in (("torch", "pt"), ("onnx", "onnx"))
              for name, spec_ in (("longest", longest), ("max_length", max_length))]
    results = _run(tmp_path, tokens, models)

    padded, cut = _padded(tokens.ids), _padded(tokens.ids, 6, truncate=True)
    assert padded.shape[1] > 6
    with torch.no_grad():
        _assert_equal(results["torch_longest"],
                      {"output_0": module(torch.from_numpy(padded)).numpy()})
        _assert_equal(results["torch_max_length"],
                      {"output_0": module(torch.from_numpy(cut)).numpy()})
    _assert_equal(results["onnx_longest"], _ort_run(f"{folder}/model.onnx", {"ids": padded}))
    _assert_equal(results["onnx_max_length"], _ort_run(f"{folder}/model.onnx", {"ids": cut}))
    _assert_equal(results["onnx_longest"], {"logits": results_of(results["torch_longest"])})


class _PaddedWidth(torch.nn.Module):
    """Outputs the width its batch was padded to, for every record."""

    def forward(self, ids):
        return torch.full((ids.shape[0], 1), float(ids.shape[1]))


def test_length_buckets_pad_each_bucket_to_its_own_longest(tmp_path, tmp_path_factory,
                                                          tokens):
    folder = str(tmp_path_factory.mktemp("buckets"))
    torch.jit.save(torch.jit.script(_PaddedWidth()), f"{folder}/model.pt")
    common = dict(uri=f"{folder}/model.pt", min_batch_size=40, max_batch_size=40,
                  inputs=InputSpec(features=["input_ids"], dtype="int64", padding="longest"))
    results = _run(tmp_path, tokens, [
        ModelConfig(name="bucketed", length_feature="input_ids", length_buckets=[4, 8],
                    **common),
        ModelConfig(name="one_batch", **common)])

    lengths = np.array([len(seq) for seq in tokens.ids])
    buckets = np.digitize(lengths, [4, 8])  # bisect_right, as the handler buckets
    assert len(set(buckets)) == 3
    widths = results_of(results["bucketed"]).reshape(-1)
    for bucket in range(3):  # all 40 records are one batch: each bucket padded on its own
        in_bucket = buckets == bucket
        assert (widths[in_bucket] == lengths[in_bucket].max()).all(), bucket
    assert (results_of(results["one_batch"]) == lengths.max()).all()


# --- custom Beam ModelHandler ------------------------------------------------------------------

class Scale:
    """The 'model': a factor. (Beam keeps a weak reference to a loaded model, so it must be
    an object that allows one: not a float, tuple or dict.)"""

    def __init__(self, factor: float):
        self.factor = factor


class ScaleHandler(ModelHandler):
    """A tiny Beam ModelHandler: its model is a factor read from a file."""

    def __init__(self, model_uri=None, offset=0.0):
        super().__init__()
        self._uri, self._offset = model_uri, offset

    def load_model(self):
        with open(os.path.join(self._uri, "factor.txt")) as f:
            return Scale(float(f.read()))

    def run_inference(self, batch, model, inference_args=None):
        for element in batch:
            if isinstance(element, bytes):  # raw records
                value = np.float32(len(element))
            elif isinstance(element, dict):
                value = sum(np.asarray(v, np.float32) for v in element.values())
            else:
                value = np.asarray(element, np.float32)
            yield PredictionResult(element,
                                   (value * model.factor + self._offset).astype(np.float32))


def test_custom_handler(tmp_path, tmp_path_factory, tabular):
    folder = str(tmp_path_factory.mktemp("custom"))
    with open(os.path.join(folder, "factor.txt"), "w") as f:
        f.write("2.0")
    options = {"handler": f"{__name__}.ScaleHandler", "handler_args": {"offset": 0.5},
               "path_arg": "model_uri"}
    results = _run(tmp_path, tabular, [
        ModelConfig(name="rows", framework="custom", uri=folder,
                    inputs=InputSpec(features=FEATURES), options=options),
        ModelConfig(name="dicts", framework="custom", uri=folder,
                    inputs=InputSpec(features=["f0", "f1"], layout="dict"), options=options),
        ModelConfig(name="raw", framework="custom", uri=folder,
                    options={**options, "raw_records": True}),
    ])
    x = tabular.x
    _assert_equal(results["rows"], {"output_0": x * 2 + 0.5})
    _assert_equal(results["dicts"], {"output_0": (x[:, :1] + x[:, 1:2]) * 2 + 0.5})
    records = sorted(tabular.index, key=tabular.index.get)
    _assert_equal(results["raw"], {"output_0": [len(r) * 2 + 0.5 for r in records]})


def test_custom_needs_a_model_handler(tmp_path):
    with pytest.raises(ConfigError, match="not an apache_beam ModelHandler"):
        create_handler(ModelConfig(framework="custom", options={"handler": "builtins.dict"}),
                       str(tmp_path))
    with pytest.raises(ConfigError, match="needs options.handler"):
        create_handler(ModelConfig(framework="custom"), str(tmp_path))


# --- TensorRT ----------------------------------------------------------------------------------

_HAS_TENSORRT = (importlib.util.find_spec("tensorrt") is not None
                 and torch.cuda.is_available())


@pytest.mark.skipif(_HAS_TENSORRT, reason="TensorRT and a GPU are present")
def test_tensorrt_without_gpu_says_so(tmp_path, tabular):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    assert detection.resolve(str(engine))[0] == "tensorrt"
    model = ModelConfig(uri=str(engine), inputs=InputSpec(features=FEATURES),
                        max_batch_size=8)
    with pytest.raises(ConfigError, match="TensorRT needs an NVIDIA GPU.*tensorrt"):
        helpers.run_bulk_inferrer(tmp_path, {spec.EXAMPLES_KEY: [tabular.examples]},
                                  InferenceConfig(models=[model]))


@pytest.mark.skipif(not _HAS_TENSORRT, reason="needs an NVIDIA GPU and the tensorrt package")
def test_tensorrt_from_onnx_on_gpu(tmp_path, tmp_path_factory, tabular):
    folder = str(tmp_path_factory.mktemp("tensorrt"))
    path = f"{folder}/mlp.onnx"
    torch.manual_seed(0)
    mlp = _Mlp().eval()
    torch.onnx.export(mlp, (torch.zeros(8, 4),), path, dynamo=False,
                      input_names=["x"], output_names=["logits"])  # a fixed batch of 8
    results = _run(tmp_path, tabular, [ModelConfig(
        name="trt", framework="tensorrt", uri=path, device="GPU", min_batch_size=8,
        max_batch_size=8, inputs=InputSpec(features=FEATURES))])["trt"]
    with torch.no_grad():
        direct = mlp(torch.from_numpy(tabular.x)).numpy()
    _assert_equal(results, {"output_0": direct}, tol=dict(rtol=1e-3, atol=1e-3))
