"""The trust gate: a model file that can run code when loaded is refused, whatever its
framework, unless the model is trusted; refused means the code did not run (no marker
file), trusted means it loads."""
import os
import pathlib
import pickle

import joblib
import numpy as np
import pytest
import torch

from inference.config import ConfigError, InputSpec, ModelConfig
from inference.engine.handler import ExampleModelHandler
from inference.engine.models import create_handler
from inference.frameworks import trust


class Evil:
    """Unpickling it creates `marker`: any code could run there."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _spec(framework, trusted=False, **options):
    return ModelConfig(name="m", framework=framework, inputs=InputSpec(features=["x"]),
                       options={**options, **({"trusted": True} if trusted else {})})


def _load(path, spec):
    """What a worker does: the gate, then the framework's load."""
    return ExampleModelHandler(_with_uri(spec, path)).load_model()


def _with_uri(spec, path):
    import dataclasses
    return dataclasses.replace(spec, uri=path)


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("lzma", 3),
                                      ("xz", 3)])
def test_pickles_are_found_by_content_however_compressed(tmp_path, compress):
    path = str(tmp_path / "model.bin")  # a name that says nothing
    joblib.dump({"weights": np.ones(3)}, path, compress=compress)
    assert trust.sniff(path) == trust.PICKLE


def test_torch_archives_and_plain_files_are_told_apart(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "state.pt")
    torch.save({"w": Evil(tmp_path / "marker")}, tmp_path / "objects.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy.pt",
               _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), tmp_path / "script.pt")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    assert trust.sniff(str(tmp_path / "state.pt")) == trust.PICKLE_ARCHIVE
    assert trust.sniff(str(tmp_path / "script.pt")) == trust.PICKLE_ARCHIVE
    assert trust.sniff(str(tmp_path / "legacy.pt")) == trust.PICKLE
    assert trust.sniff(str(tmp_path / "objects.pt")) == trust.PICKLE
    assert trust.sniff(str(tmp_path / "model.onnx")) is None


def _refused_then_trusted(tmp_path, path, framework, **options):
    marker = tmp_path / "marker"
    spec = _with_uri(_spec(framework, **options), path)
    with pytest.raises(ConfigError, match=r"(?s)can run whatever code.*'trusted': True"):
        create_handler(spec, path)  # where the pipeline is built
    with pytest.raises(ConfigError, match="trusted"):
        _load(path, spec)  # and where a worker loads it (e.g. a new version mid-stream)
    assert not marker.exists()
    trusted = _with_uri(_spec(framework, trusted=True, **options), path)
    try:
        _load(path, trusted)
    except Exception:  # the evil "model" is no model
        pass
    assert marker.exists()


def test_scikit_learn_pickles(tmp_path):
    path = str(tmp_path / "model.joblib")
    joblib.dump(Evil(tmp_path / "marker"), path)
    _refused_then_trusted(tmp_path, path, "sklearn")


def test_a_custom_handler_given_a_pickle(tmp_path):
    """Beam's own scikit-learn handler behind framework="custom": the file is the same
    untrusted data."""
    path = str(tmp_path / "model.bin")
    with open(path, "wb") as f:
        pickle.dump(Evil(tmp_path / "marker"), f)
    _refused_then_trusted(
        tmp_path, path, "custom", path_arg="model_uri",
        handler="apache_beam.ml.inference.sklearn_inference.SklearnModelHandlerNumpy")


def test_pytorch_state_dicts_holding_objects(tmp_path):
    """Loaded weights-only: an object in the "state dict" is refused by torch, and then by
    the gate, with the same message; trusted, torch.load unpickles it in full."""
    path = str(tmp_path / "state.pt")
    torch.save({"weight": Evil(tmp_path / "marker")}, path)
    _refused_then_trusted(tmp_path, path, "pytorch", model_class="torch.nn.Identity")


def test_legacy_torch_pickles(tmp_path):
    path = str(tmp_path / "legacy.pt")
    torch.save({"weight": Evil(tmp_path / "marker")}, path,
               _use_new_zipfile_serialization=False)
    _refused_then_trusted(tmp_path, path, "pytorch", model_class="torch.nn.Identity")


def test_keras_2_hdf5_files_with_lambda_layers(tmp_path):
    """Keras 3 refuses the Lambda (safe mode); Keras 2 (tf_keras) would run it."""
    import tf_keras
    marker = str(tmp_path / "marker")
    inputs = tf_keras.Input((1,), name="x")
    outputs = tf_keras.layers.Lambda(
        lambda t: (open(marker, "w").close(), t)[1])(inputs)  # noqa: E501
    model = tf_keras.Model(inputs, outputs)
    path = str(tmp_path / "model.h5")
    model.save(path)
    os.remove(marker)  # building the model ran it once
    _refused_then_trusted(tmp_path, path, "keras")


def test_hugging_face_pickle_weights(tmp_path):
    """A folder whose weights are torch pickles (pytorch_model.bin): trusted only;
    safetensors weights load as they are."""
    import transformers
    config = transformers.BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=8)
    model = transformers.BertModel(config)
    pickled, safe = str(tmp_path / "pickled"), str(tmp_path / "safe")
    model.save_pretrained(pickled, safe_serialization=False)
    model.save_pretrained(safe)
    spec = _spec("huggingface", model_class="transformers.BertModel")
    with pytest.raises(ConfigError, match=r"pytorch_model.bin' is a zip archive holding "
                                          r"pickles.*'trusted': True"):
        create_handler(spec, pickled)
    create_handler(_spec("huggingface", trusted=True, model_class="transformers.BertModel"),
                   pickled)
    _load(safe, _with_uri(spec, safe))


def test_an_empty_folder_holds_nothing_to_refuse(tmp_path):
    """A custom handler may build its model itself and take an empty folder as its uri."""
    (tmp_path / "empty").mkdir()
    trust.check(_spec("custom"), str(tmp_path / "empty"))
    assert trust.sniff(str(tmp_path / "empty")) is None


def test_only_true_itself_trusts():
    assert trust.trusted(_spec("sklearn", trusted=True))
    assert not trust.trusted(ModelConfig(options={"trusted": "yes"}))
    assert not trust.trusted(_spec("sklearn"))
