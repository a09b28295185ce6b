"""Builders for real test inputs: tf.Examples, Examples/Model artifacts, small models."""
import os
from typing import Dict, List, Optional, Sequence

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
    """The dead letters (inference.data.failures.Failure) in a `failures` output folder."""
    from inference.data.failures import Failure
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


def run_bulk_inferrer(tmp_path, inputs, inference_config=None, failures_uri=None,
                      beam_args=(), **props):
    """Runs the BulkInferrer executor in-process; returns its InferenceResult artifact.

    inputs: the executor's input dict ({"examples": [...], "model": [...], ...}).
    inference_config: an InferenceConfig (or its JSON); failures_uri: where the
    `failures` output goes (else a temporary folder); beam_args: more Beam flags; props:
    other execution properties (protos, or JSON strings). Each call writes under its own
    folder of `tmp_path`.
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
    executor.Executor(beam_context(tmp_path, os.path.basename(run_dir), beam_args)).Do(
        inputs, outputs, exec_properties)
    return output


# --- images and an image classifier ----------------------------------------------------------

COLOURS = {"red": (220, 30, 40), "green": (20, 200, 50), "blue": (30, 40, 210)}
COLOUR_NAMES = list(COLOURS)


def write_colour_images(folder: str) -> Dict[str, Optional[str]]:
    """Noisy images of one colour each, in PNG, JPEG and BMP (one ending in NUL bytes) of
    different sizes, and a grayscale PNG: {path: colour (None for the grayscale one)}.
    Beside them, not images: `truncated.jpeg` (half a JPEG) and `notes.jpeg` (text)."""
    from PIL import Image
    files = {}
    for i, (colour, fmt) in enumerate([("red", "PNG"), ("green", "JPEG"), ("blue", "PNG"),
                                       ("red", "JPEG"), ("blue", "BMP"), ("green", "PNG")]):
        path = os.path.join(folder, f"{colour}-{i}.{fmt.lower()}")
        noise = np.random.RandomState(i).randint(-30, 30, size=(17 + 3 * i, 21 + 4 * i, 3))
        Image.fromarray(np.clip(np.add(COLOURS[colour], noise), 0, 255).astype(np.uint8)
                        ).save(path, fmt)
        files[path] = colour
    gray = os.path.join(folder, "gray.png")
    Image.open(os.path.join(folder, "red-0.png")).convert("L").save(gray)
    files[gray] = None
    with open(os.path.join(folder, "green-1.jpeg"), "rb") as f:
        data = f.read()
    with open(os.path.join(folder, "truncated.jpeg"), "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(folder, "notes.jpeg"), "w") as f:
        f.write("not an image\n")
    return files


def save_colour_classifier(path: str):
    """A TorchScript CNN on NCHW float images whose logits follow each image's mean
    colour (red, green, blue), plus noise from random weights; returns the module."""
    import torch
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, kernel_size=3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(0.05).add_(torch.eye(3)[:, :, None, None] / 9)
    module = torch.jit.script(torch.nn.Sequential(
        conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3)))
    with torch.no_grad():
        module[3].weight.copy_(torch.eye(3) + 0.05 * torch.randn(3, 3))
    torch.jit.save(module, path)
    return module


def image_pixels(path: str, spec) -> np.ndarray:
    """What a model should get for the image at `path` by an `ImageSpec`, computed here
    with Pillow and NumPy."""
    from PIL import Image, ImageOps
    size = tuple(reversed(spec.size))
    with Image.open(path) as image:
        image = image.convert("RGB" if spec.channels == 3 else "L")
        image = (ImageOps.fit(image, size, Image.Resampling.BILINEAR)
                 if spec.fit == "center_crop" else image.resize(size, Image.Resampling.BILINEAR))
    pixels = np.asarray(image, dtype=np.float32).reshape(*spec.size, spec.channels)
    pixels = (pixels * np.float32(spec.scale) - np.float32(spec.mean or 0)) / np.float32(
        spec.std or 1)
    return pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels


def expected_labels(module, paths: Sequence[str], spec, top_k: int):
    """The module's softmax probabilities on the images at `paths`, as `image_pixels`
    gives them: per path, (the top_k class names, their probabilities), best first."""
    import torch
    probabilities = torch.softmax(module(torch.from_numpy(np.stack(
        [image_pixels(path, spec) for path in paths]))), dim=1).detach().numpy()
    expected = {}
    for path, row in zip(paths, probabilities):
        best = np.argsort(-row, kind="stable")[:top_k]
        expected[path] = ([COLOUR_NAMES[i].encode() for i in best], row[best])
    return expected
