"""Builders for real test inputs: tf.Examples, Examples/Model artifacts, small models."""
import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts


def example(features: Dict[str, Sequence]) -> bytes:
    """A serialized tf.Example; floats, ints and bytes by the values' type."""
    feature = {}
    for name, values in features.items():
        values = list(np.asarray(values).reshape(-1)) if not isinstance(values, list) else values
        if values and isinstance(values[0], (bytes, str)):
            f = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode() if isinstance(v, str) else v for v in values]))
        elif values and np.issubdtype(type(values[0]), np.integer):
            f = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            f = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        feature[name] = f
    return tf.train.Example(
        features=tf.train.Features(feature=feature)).SerializeToString()


def float_examples(matrix: np.ndarray, names: Sequence[str]) -> List[bytes]:
    return [example({n: [float(v)] for n, v in zip(names, row)}) for row in matrix]


def write_tfrecords(path: str, records: Sequence[bytes], gzipped: bool = True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = "GZIP" if gzipped else None
    with tf.io.TFRecordWriter(path, options=options) as writer:
        for record in records:
            writer.write(record)


def examples_artifact(root: str, splits: Dict[str, Sequence[bytes]]):
    """An Examples artifact laid out as ExampleGen writes it (Split-*/data_tfrecord-*.gz)."""
    artifact = standard_artifacts.Examples()
    artifact.uri = root
    artifact.split_names = artifact_utils.encode_split_names(sorted(splits))
    for split, records in splits.items():
        write_tfrecords(os.path.join(root, f"Split-{split}", "data_tfrecord-00000-of-00001.gz"),
                        records)
    return artifact


def model_artifact(uri: str):
    """A Model artifact whose serving model lives at <uri>/Format-Serving."""
    artifact = standard_artifacts.Model()
    artifact.uri = uri
    return artifact


def serving_dir(model_artifact_) -> str:
    path = os.path.join(model_artifact_.uri, "Format-Serving")
    os.makedirs(path, exist_ok=True)
    return path


def output_artifact(kind, uri: str):
    artifact = kind()
    artifact.uri = uri
    os.makedirs(uri, exist_ok=True)
    return artifact


def beam_context(tmp_path, unique_id: str = "test", beam_args: Sequence[str] = ()
                 ) -> base_beam_executor.BaseBeamExecutor.Context:
    """An in-process executor context (more Beam flags in `beam_args`). Naming an SDK image
    stops TFX from building its ephemeral sdist for workers (seconds per executor)."""
    return base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--direct_num_workers=1", "--sdk_container_image=in-process",
                            *beam_args],
        tmp_dir=str(tmp_path / "tmp"), unique_id=unique_id)


def read_prediction_logs(pattern: str) -> List[prediction_log_pb2.PredictionLog]:
    files = sorted(tf.io.gfile.glob(pattern))
    assert files, f"no files match {pattern}"
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def read_examples(pattern: str) -> List[tf.train.Example]:
    files = sorted(tf.io.gfile.glob(pattern))
    assert files, f"no files match {pattern}"
    return [tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def read_failures(uri: str):
    """The dead letters (inference.failures.Failure) in a `failures` output folder."""
    from inference.failures import Failure
    files = tf.io.gfile.glob(f"{uri}/failures-*.gz")
    return [Failure.from_example(r.numpy())
            for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def save_example_parsing_model(path: str, feature_names: Sequence[str], weights, bias=0.0):
    """A TF SavedModel whose serving signature parses serialized tf.Examples.

    outputs = sigmoid(x @ weights + bias) with x the float features in order, as a
    TFX Trainer's serving signature would compute from raw examples.
    """
    spec = {n: tf.io.FixedLenFeature([1], tf.float32) for n in feature_names}
    w = tf.constant(np.asarray(weights, np.float32).reshape(-1, 1))

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(examples, spec)
            x = tf.concat([parsed[n] for n in feature_names], axis=1)
            return {"outputs": tf.sigmoid(tf.matmul(x, w) + bias)}

    module = Model()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def run_bulk_inferrer(tmp_path, inputs, inference_config=None, failures_uri=None, **props):
    """Runs the BulkInferrer executor in-process; returns its InferenceResult artifact.

    inputs: the executor's input dict ({"examples": [...], "model": [...], ...}).
    inference_config: an InferenceConfig (or its JSON); failures_uri: where the
    `failures` output goes (else a temporary folder); props: other execution properties
    (protos, or JSON strings). Each call writes under its own folder of `tmp_path`.
    """
    import tempfile
    from tfx.utils import proto_utils

    from components.bulk_inferrer import executor, spec
    exec_properties = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}"}
    if inference_config is not None:
        props[spec.INFERENCE_CONFIG_KEY] = inference_config
    for key, value in props.items():
        exec_properties[key] = value if isinstance(value, str) else (
            value.to_json() if hasattr(value, "to_json") else proto_utils.proto_to_json(value))
    run_dir = tempfile.mkdtemp(prefix="bulk_inferrer-", dir=str(tmp_path))
    output = output_artifact(standard_artifacts.InferenceResult,
                             os.path.join(run_dir, spec.INFERENCE_RESULT_KEY))
    outputs = {spec.INFERENCE_RESULT_KEY: [output]}
    if failures_uri:
        outputs[spec.FAILURES_KEY] = [output_artifact(spec.InferenceFailures, failures_uri)]
    executor.Executor(beam_context(tmp_path, os.path.basename(run_dir))).Do(
        inputs, outputs, exec_properties)
    return output
