"""Pre- and post-processing from a user module file, as TFX takes `module_file`."""
import json
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf
import torch

from components.bulk_inferrer import spec
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.data.results import FilePosition
from inference.engine.models import create_handler
from tests import helpers

FEATURES = ["f0", "f1"]
MODULE = '''
import numpy as np
from apache_beam.ml.inference.base import PredictionResult

LABELS = np.array([b"small", b"big"])


def double(inputs):
    return inputs * 2


def to_label(result):
    score = float(result.inference[0])
    if score > 100:
        raise ValueError("score out of range")
    return PredictionResult(result.example,
                            {"label": LABELS[int(score > 1.0)], "score": np.float32(score)},
                            result.model_id)
'''


class Sum(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=1, keepdim=True)


def test_preprocess_and_postprocess_from_a_module_file(tmp_path):
    module_file = tmp_path / "user_module.py"
    module_file.write_text(MODULE)
    model_path = str(tmp_path / "sum.pt")
    torch.jit.save(torch.jit.script(Sum()), model_path)
    x = np.array([[0.1, 0.2], [0.5, 0.9], [60.0, 60.0]], dtype=np.float32)
    examples = helpers.examples_artifact(str(tmp_path / "examples"),
                                         {"eval": helpers.float_examples(x, FEATURES)})
    config = InferenceConfig(models=[ModelConfig(
        name="sum", uri=model_path, inputs=InputSpec(features=FEATURES),
        preprocess_fn=f"{module_file}:double", postprocess_fn=f"{module_file}:to_label")])
    result = helpers.run_bulk_inferrer(tmp_path, {spec.EXAMPLES_KEY: [examples]}, config,
                                       max_failure_fraction="0.5")
    logs = helpers.read_prediction_logs(f"{result.uri}/prediction_logs-*.gz")
    got = sorted((tf.make_ndarray(log.predict_log.response.outputs["score"]).item(),
                  tf.make_ndarray(log.predict_log.response.outputs["label"]).item())
                 for log in logs)
    assert got == [(pytest.approx(0.6), b"small"), (pytest.approx(2.8), b"big")]
    # The third record's score (240) makes post-processing raise: a dead letter.
    figures = json.loads(result.get_string_custom_property("figures"))["models"]["sum"]
    assert figures["failures_by_stage"] == {"postprocess": 1}


def test_a_function_that_does_not_exist_is_a_clear_error(tmp_path):
    module_file = tmp_path / "user_module.py"
    module_file.write_text(MODULE)
    model_path = str(tmp_path / "sum.pt")
    torch.jit.save(torch.jit.script(Sum()), model_path)
    with pytest.raises(ConfigError, match="defines no 'missing'"):
        create_handler(ModelConfig(name="sum", uri=model_path,
                                   inputs=InputSpec(features=FEATURES),
                                   postprocess_fn=f"{module_file}:missing"))


TOKENIZING_MODULE = '''
import functools
import os

import numpy as np


@functools.lru_cache(maxsize=None)
def _tokenizer():
    """Loaded once per worker process: an lru_cache, which pickle cannot take by value."""
    import transformers
    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(__file__), "tokenizer"))


def tokenize(texts):
    """A bytes feature ([batch, 1] of bytes) -> the dict of int64 arrays a Hugging Face
    model takes as keyword arguments."""
    with open(os.path.join(os.path.dirname(__file__), "pids.txt"), "a") as f:
        f.write(f"{os.getpid()} ")
    encoded = _tokenizer()([text[0].decode() for text in texts], padding=True,
                           return_tensors="np")
    return {"input_ids": encoded["input_ids"].astype(np.int64),
            "attention_mask": encoded["attention_mask"].astype(np.int64)}
'''
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "film", "very"]
TEXTS = ["a good film", "a very very bad film", "film", "good good good", "bad"]


@pytest.fixture(scope="module")
def tokenizing_module(tmp_path_factory):
    """A module file whose preprocess_fn tokenises text with a cached tokenizer, and a
    tiny BERT classifier for its outputs."""
    import transformers
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "user_module.py").write_text(TOKENIZING_MODULE)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(
        str(folder / "tokenizer"))
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16)).save_pretrained(str(folder / "bert"))
    return folder


def _tokenizing_model(folder) -> ModelConfig:
    return ModelConfig(
        name="bert", uri=str(folder / "bert"), framework="huggingface",
        inputs=InputSpec(features=["text"], dtype="bytes"),
        preprocess_fn=f"{folder / 'user_module.py'}:tokenize",
        options={"model_class": "transformers.AutoModelForSequenceClassification"})


def test_module_file_functions_pickle_with_the_handler(tokenizing_module):
    """The handler holds the function's path, not the function: it pickles (with
    pickle and Beam's pickler) and the copy loads the module file where it runs."""
    from apache_beam.internal import pickler
    handler = create_handler(_tokenizing_model(tokenizing_module))
    records = [helpers.example({"text": [text]}) for text in TEXTS]
    for copy in (pickle.loads(pickle.dumps(handler)), pickler.loads(pickler.dumps(handler))):
        [result] = copy.run_inference([(FilePosition("texts", 0), records)], copy.load_model())
        assert not result.failures and result.outputs["logits"].shape == (len(TEXTS), 2)


def test_module_file_functions_in_worker_processes(tmp_path, tokenizing_module):
    """Workers in other processes (multi_processing) load the module file themselves;
    its preprocess_fn turns a bytes feature into a dict of int64 arrays."""
    import transformers
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {
        "eval": [helpers.example({"text": [text]}) for text in TEXTS]})
    result = helpers.run_bulk_inferrer(
        tmp_path, {spec.EXAMPLES_KEY: [examples]},
        InferenceConfig(models=[_tokenizing_model(tokenizing_module)]),
        beam_args=["--direct_running_mode=multi_processing"])
    logs = helpers.read_prediction_logs(f"{result.uri}/prediction_logs-*.gz")
    got = {tf.train.Example.FromString(log.predict_log.request.inputs["examples"]
                                       .string_val[0]).features.feature["text"]
           .bytes_list.value[0].decode():
           tf.make_ndarray(log.predict_log.response.outputs["logits"])[0] for log in logs}

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizing_module / "tokenizer"))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(tokenizing_module / "bert")).eval()
    with torch.no_grad():
        want = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    assert sorted(got) == sorted(TEXTS)
    ran_in = set((tokenizing_module / "pids.txt").read_text().split())
    assert ran_in - {str(os.getpid())}, "the preprocess_fn ran in this process only"
    np.testing.assert_allclose([got[text] for text in TEXTS], want, rtol=1e-5, atol=1e-5)


def test_module_file_errors_name_the_option_and_the_file(tmp_path, tokenizing_module):
    broken = tmp_path / "broken_module.py"
    broken.write_text("import numpy as np\nraise RuntimeError('no GPU here')\n")
    model = _tokenizing_model(tokenizing_module)
    model.preprocess_fn = f"{broken}:tokenize"
    with pytest.raises(ConfigError, match=rf"preprocess_fn='{broken}:tokenize' failed to "
                                          rf"run: RuntimeError: no GPU here"):
        create_handler(model)
    model.preprocess_fn = f"{tmp_path / 'missing.py'}:tokenize"
    with pytest.raises(ConfigError, match=r"cannot read the module file of "
                                          r"preprocess_fn='.*missing\.py:tokenize'"):
        create_handler(model)
