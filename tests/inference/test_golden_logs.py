"""The bytes the BulkInferrer writes stay what they were: PredictionLogs and output examples
of a fixed set of models on fixed records, compared byte for byte with a stored expectation.

The models compute exactly representable values (sums and doubles of dyadic floats, tree
leaf fractions, integers), so the expectation holds on any CPU. Regenerate the expectation
only for an intended format change: `python -m tests.inference.test_golden_logs`.
"""
import os
import sys

import numpy as np
import tensorflow as tf
import torch
from tfx.proto import bulk_inferrer_pb2
from tfx.types import standard_artifacts

from components.bulk_inferrer import spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from tests import helpers

FEATURES = ["f0", "f1", "f2"]
EXPECTED = os.path.join(os.path.dirname(__file__), "data", "golden_logs.tfrecord.gz")


class _Scale(torch.nn.Module):
    def forward(self, x):
        return x * 2.0


class _Multi(torch.nn.Module):
    def forward(self, x):
        return {"sum": x.sum(dim=1, keepdim=True), "eighths": (x * 8.0).long()}


def _records():
    values = (np.arange(40 * 3).reshape(40, 3) % 17) / 8.0
    def example(i, row):  # map entries sorted, so the records are the same bytes each run
        return tf.train.Example(features=tf.train.Features(feature={
            **{n: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
               for n, v in zip(FEATURES, row)},
            "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"row%d" % i]))})
        ).SerializeToString(deterministic=True)
    return [example(i, row) for i, row in enumerate(values)], values


def _models(root: str):
    """Model name -> (path, ModelConfig keyword arguments)."""
    os.makedirs(root, exist_ok=True)
    import joblib
    from sklearn.tree import DecisionTreeClassifier
    _, values = _records()
    torch.jit.save(torch.jit.script(_Scale()), f"{root}/scale.pt")
    torch.jit.save(torch.jit.script(_Multi()), f"{root}/multi.pt")
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(
        values, (values.sum(axis=1) > 3).astype(np.int64) + (values[:, 0] > 1))
    joblib.dump(tree, f"{root}/tree.joblib")

    class Doubled(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, examples):
            parsed = tf.io.parse_example(
                examples, {n: tf.io.FixedLenFeature([1], tf.float32) for n in FEATURES})
            return {"doubled": tf.concat([parsed[n] for n in FEATURES], axis=1) * 2.0}

    module = Doubled()
    tf.saved_model.save(module, f"{root}/savedmodel", signatures={"serving_default":
                                                                   module.serve})
    inputs = InputSpec(features=FEATURES)
    return {
        "scale": ModelConfig(name="scale", uri=f"{root}/scale.pt", inputs=inputs),
        "multi": ModelConfig(name="multi", uri=f"{root}/multi.pt", inputs=inputs),
        "tree": ModelConfig(name="tree", uri=f"{root}/tree.joblib", inputs=inputs,
                            options={"trusted": True, "method": "predict_proba"}),
        "savedmodel": ModelConfig(name="savedmodel", uri=f"{root}/savedmodel"),
    }


def _outputs(tmp_path) -> list:
    """[(kind, model, serialized record)] of every log and output example, sorted."""
    records, _ = _records()
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {"eval": records})
    written = []
    for name, model in _models(str(tmp_path / "models")).items():
        result = helpers.run_bulk_inferrer(tmp_path, {spec.EXAMPLES_KEY: [examples]},
                                           InferenceConfig(models=[model]))
        files = tf.io.gfile.glob(f"{result.uri}/prediction_logs-*.gz")
        written += [(b"log", name.encode(), r.numpy()) for r in
                    tf.data.TFRecordDataset(files, compression_type="GZIP")]
    output = helpers.output_artifact(standard_artifacts.Examples, str(tmp_path / "out"))
    from tfx.utils import proto_utils

    from components.bulk_inferrer import executor
    output_spec = bulk_inferrer_pb2.OutputExampleSpec(output_columns_spec=[
        bulk_inferrer_pb2.OutputColumnsSpec(predict_output=bulk_inferrer_pb2.PredictOutput(
            output_columns=[bulk_inferrer_pb2.PredictOutputCol(
                output_key="output_0", output_column="scaled")]))])
    config = InferenceConfig(models=[_models(str(tmp_path / "models"))["scale"]])
    executor.Executor(helpers.beam_context(tmp_path, "examples")).Do(
        {spec.EXAMPLES_KEY: [examples]}, {spec.OUTPUT_EXAMPLES_KEY: [output]},
        {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
         spec.OUTPUT_EXAMPLE_SPEC_KEY: proto_utils.proto_to_json(output_spec),
         spec.INFERENCE_CONFIG_KEY: config.to_json()})
    files = tf.io.gfile.glob(f"{output.uri}/Split-eval/examples-*.gz")
    written += [(b"example", b"scale", r.numpy()) for r in
                tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return sorted(written, key=lambda row: row[:2] + (_sort_key(row),))


def _sort_key(row) -> bytes:
    """Logs sort by their bytes; output examples by their `label` (their bytes vary)."""
    kind, _, record = row
    if kind == b"log":
        return record
    return tf.train.Example.FromString(record).features.feature["label"].bytes_list.value[0]


def _framed(rows) -> list:
    return [kind + b"\x00" + model + b"\x00" + record for kind, model, record in rows]


def test_logs_and_output_examples_are_byte_for_byte_the_stored_ones(tmp_path):
    got = _framed(_outputs(tmp_path))
    expected = [r.numpy() for r in tf.data.TFRecordDataset(EXPECTED, compression_type="GZIP")]
    assert len(got) == len(expected) == 4 * 40 + 40
    for index, (mine, stored) in enumerate(zip(got, expected)):
        if mine.startswith(b"example"):  # TFX's converter writes map entries in any order
            mine, stored = (tf.train.Example.FromString(r.split(b"\x00", 2)[2])
                            for r in (mine, stored))
        assert mine == stored, f"output {index} differs: {mine!r} vs {stored!r}"


if __name__ == "__main__":
    import pathlib
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        rows = _framed(_outputs(pathlib.Path(folder)))
    with tf.io.TFRecordWriter(EXPECTED, options="GZIP") as writer:
        for row in rows:
            writer.write(row)
    print(f"wrote {len(rows)} outputs to {EXPECTED}", file=sys.stderr)
