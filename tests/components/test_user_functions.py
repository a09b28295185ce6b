"""Pre- and post-processing from a user module file, as TFX takes `module_file`."""
import json

import numpy as np
import pytest
import tensorflow as tf
import torch

from components.bulk_inferrer import spec
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.models import create_handler
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
