"""What the framework tests share: data shapes, models built here, and running the real
BulkInferrer executor on them and reading back what it wrote."""
import os

import numpy as np
import tensorflow as tf
import torch

from components.bulk_inferrer import spec
from inference.config import InferenceConfig
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


class Data:
    def __init__(self, examples, records, **arrays):
        self.examples = examples
        self.index = {record: i for i, record in enumerate(records)}
        assert len(self.index) == len(records), "records must be distinct"
        self.__dict__.update(arrays)

    def __len__(self):
        return len(self.index)


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


def _padded(ids, width=None, truncate=False):
    width = width or max(len(seq) for seq in ids)
    out = np.zeros((len(ids), width), np.int64)
    for row, seq in zip(out, ids):
        seq = seq[:width] if truncate else seq
        row[:len(seq)] = seq
    return out


def _ort_run(path, feeds):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))
