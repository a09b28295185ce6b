"""TensorFlow SavedModels taking serialized examples: a predict signature runs in a session
here and writes the logs tfx_bsl's own handler writes; classify signatures go through
tfx_bsl's public handler as they are."""
import os

import numpy as np
import tensorflow as tf
import tfx
from tensorflow_serving.apis import prediction_log_pb2
from tfx_bsl.public.beam.run_inference import CreateModelHandler
from tfx_bsl.public.proto import model_spec_pb2

from inference import frameworks
from inference.config import ModelConfig
from inference.data.columns import PREDICTION_LOG
from inference.frameworks import BeamHandler
from tests import helpers

FEATURES = ["f0", "f1", "f2"]


def _records(n=5):
    return helpers.float_examples(np.random.RandomState(0).rand(n, 3), FEATURES)


def _logs(column):
    return [prediction_log_pb2.PredictionLog.FromString(log) for log in column]


def test_a_predict_signature_writes_the_logs_tfx_bsls_handler_writes(tmp_path):
    path = helpers.save_example_parsing_model(str(tmp_path / "sm"), FEATURES,
                                              [0.5, -1.0, 2.0], 0.1)
    framework, spec = frameworks.get("tensorflow"), ModelConfig(name="tf")
    assert frameworks.takes_records(framework, spec)
    model = framework.load(path, spec)
    assert not isinstance(model, BeamHandler)  # our session, not tfx_bsl's handler
    records = _records()
    ours = _logs(framework.predict(model, records, spec)[PREDICTION_LOG])
    handler = CreateModelHandler(model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(model_path=path)))
    theirs = list(handler.run_inference(records, handler.load_model()))
    assert ours == theirs


def test_a_classify_signature_goes_through_tfx_bsls_public_handler():
    """TFX's own test model (a classifier) on TFX's own test examples."""
    testdata = os.path.join(os.path.dirname(tfx.__file__), "components", "testdata")
    [saved_model] = tf.io.gfile.glob(os.path.join(
        testdata, "trainer", "current", "Format-Serving", "export", "*", "*", "saved_model.pb"))
    path = os.path.dirname(saved_model)
    files = tf.io.gfile.glob(os.path.join(testdata, "csv_example_gen", "unlabelled", "*"))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
               .take(3)]
    framework, spec = frameworks.get("tensorflow"), ModelConfig(name="tf")
    model = framework.load(path, spec)
    assert isinstance(model, BeamHandler)
    logs = _logs(framework.predict(model, records, spec)[PREDICTION_LOG])
    assert [len(log.classify_log.response.result.classifications[0].classes)
            for log in logs] == [2, 2, 2]
