"""Fixtures of the framework tests: one examples artifact per data shape, shared models."""
import os

import numpy as np
import pytest
import torch

from tests import helpers
from tests.inference.frameworks.common import FEATURES, VOCAB, Data, _serving


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


@pytest.fixture(scope="module")
def logistic(tabular):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression().fit(tabular.x, tabular.y)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny BERT classifier and its tokenizer, built here (nothing downloaded)."""
    import transformers
    artifact, folder = _serving(tmp_path_factory, "bert")
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
