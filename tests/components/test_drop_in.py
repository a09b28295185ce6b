"""TFX BulkInferrer behaviours beyond its own tests, side by side with TFX's executor where
TFX has one: empty and absent splits succeed with empty outputs, tf.SequenceExamples, and
an `inference_config` given as a RuntimeParameter (set when a Vertex run is submitted)."""
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import torch
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import components as tfx_components
from tfx import v1 as tfx
from tfx.components.bulk_inferrer import executor as tfx_executor
from tfx.components.util import examples_utils
from tfx.orchestration import data_types
from tfx.proto import bulk_inferrer_pb2, example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from components import BulkInferrer
from components.bulk_inferrer import executor, report, spec
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from tests import helpers

FEATURES = ["f0", "f1", "f2"]
OUTPUT_SPEC = bulk_inferrer_pb2.OutputExampleSpec(output_columns_spec=[
    bulk_inferrer_pb2.OutputColumnsSpec(predict_output=bulk_inferrer_pb2.PredictOutput(
        output_columns=[bulk_inferrer_pb2.PredictOutputCol(output_key="outputs",
                                                           output_column="score")]))])


@pytest.fixture(scope="module")
def tf_model(tmp_path_factory):
    artifact = helpers.model_artifact(str(tmp_path_factory.mktemp("tf_model")))
    helpers.save_example_parsing_model(helpers.serving_dir(artifact), FEATURES, [1, 2, 3])
    return artifact


def _properties(**props):
    properties = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}"}
    properties.update({key: value if isinstance(value, (str, int)) else
                       proto_utils.proto_to_json(value) for key, value in props.items()})
    return properties


def _run(executor_cls, root, inputs, props, outputs=(spec.INFERENCE_RESULT_KEY,)):
    """Runs `executor_cls` with the given outputs under `root`; returns them by key."""
    kinds = {spec.INFERENCE_RESULT_KEY: standard_artifacts.InferenceResult,
             spec.OUTPUT_EXAMPLES_KEY: standard_artifacts.Examples}
    output_dict = {key: [helpers.output_artifact(kinds[key], str(root / key))]
                   for key in outputs}
    executor_cls(helpers.beam_context(root)).Do(inputs, output_dict, props)
    return {key: artifacts[0] for key, artifacts in output_dict.items()}


def _files(folder):
    """The files under `folder`, but for our run report (which TFX does not write)."""
    return sorted(os.path.relpath(os.path.join(d, name), folder)
                  for d, _, names in os.walk(folder) for name in names
                  if name != report.REPORT_FILE_NAME)


def _records(pattern):
    files = tf.io.gfile.glob(pattern)
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


CASES = {  # examples' splits, data_spec's splits, the splits the warning names
    "an empty split": ({"eval": 0}, [], "['eval'] hold no examples"),
    "an absent split": ({"eval": 5}, ["test"], "names split(s) ['test'], which the "
                                               "examples do not have"),
}


@pytest.mark.parametrize("case", CASES)
def test_no_examples_succeeds_with_empty_outputs_as_tfx(tmp_path, tf_model, case, caplog):
    sizes, wanted, warning = CASES[case]
    rng = np.random.RandomState(0)
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {
        split: helpers.float_examples(rng.rand(n, 3), FEATURES) for split, n in sizes.items()})
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [tf_model]}
    props = _properties(data_spec=bulk_inferrer_pb2.DataSpec(example_splits=wanted),
                        output_example_spec=OUTPUT_SPEC)
    both = (spec.INFERENCE_RESULT_KEY, spec.OUTPUT_EXAMPLES_KEY)
    with caplog.at_level(logging.WARNING):
        ours = _run(executor.Executor, tmp_path / "ours", inputs, props, both)
    theirs = _run(tfx_executor.Executor, tmp_path / "tfx", inputs, props, both)

    assert warning in caplog.text
    for key in both:
        assert _files(ours[key].uri) == _files(theirs[key].uri), key
        assert ours[key].get_int_custom_property("examples_in") == 0
        assert ours[key].get_int_custom_property("predictions") == 0
    assert _files(ours[spec.INFERENCE_RESULT_KEY].uri) == ["prediction_logs-00000-of-00001.gz"]
    assert _records(f"{ours[spec.INFERENCE_RESULT_KEY].uri}/prediction_logs-*") == 0
    assert ours[spec.OUTPUT_EXAMPLES_KEY].split_names == \
        theirs[spec.OUTPUT_EXAMPLES_KEY].split_names

    with pytest.raises(ValueError, match="no example.* to infer"):
        _run(executor.Executor, tmp_path / "strict", inputs, _properties(
            data_spec=bulk_inferrer_pb2.DataSpec(example_splits=wanted),
            **{spec.FAIL_ON_EMPTY_INPUT_KEY: 1}))


# SequenceExamples: context features `f`, `g`; feature list `s`, one float per step.
def _sequence_example(f: float, g: float, steps) -> bytes:
    return tf.train.SequenceExample(
        context=tf.train.Features(feature={
            "f": tf.train.Feature(float_list=tf.train.FloatList(value=[f])),
            "g": tf.train.Feature(float_list=tf.train.FloatList(value=[g]))}),
        feature_lists=tf.train.FeatureLists(feature_list={"s": tf.train.FeatureList(feature=[
            tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for v in steps])})
    ).SerializeToString()


@pytest.fixture(scope="module")
def sequence_examples(tmp_path_factory):
    rng = np.random.RandomState(3)
    splits = {split: [_sequence_example(*rng.rand(2), rng.rand(rng.randint(1, 5)))
                      for _ in range(n)] for split, n in (("train", 30), ("eval", 20))}
    artifact = helpers.examples_artifact(str(tmp_path_factory.mktemp("sequences")), splits)
    examples_utils.set_payload_format(artifact,
                                      example_gen_pb2.PayloadFormat.FORMAT_TF_SEQUENCE_EXAMPLE)
    return artifact, [record for records in splits.values() for record in records]


@pytest.fixture(scope="module")
def sequence_schema(tmp_path_factory):
    """The Schema SchemaGen writes for these SequenceExamples (the feature lists in a
    STRUCT feature named ##SEQUENCE##)."""
    schema = schema_pb2.Schema()
    for name in ("f", "g"):
        schema.feature.add(name=name, type=schema_pb2.FLOAT)
    sequence = schema.feature.add(name="##SEQUENCE##", type=schema_pb2.STRUCT)
    sequence.struct_domain.feature.add(name="s", type=schema_pb2.FLOAT)
    artifact = helpers.output_artifact(standard_artifacts.Schema,
                                       str(tmp_path_factory.mktemp("schema")))
    io_utils.write_pbtxt_file(os.path.join(artifact.uri, "schema.pbtxt"), schema)
    return artifact


def test_sequence_examples_through_a_predict_signature_equal_tfx(tmp_path, sequence_examples):
    examples, records = sequence_examples
    model = helpers.model_artifact(str(tmp_path / "model"))

    class Model(tf.Module):  # 10 * f + the sum of the steps of s
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve(self, serialized):
            context, sequences, _ = tf.io.parse_sequence_example(
                serialized, context_features={"f": tf.io.FixedLenFeature([1], tf.float32)},
                sequence_features={"s": tf.io.FixedLenSequenceFeature(
                    [1], tf.float32, allow_missing=True)})
            return {"outputs": 10 * context["f"] + tf.reduce_sum(sequences["s"], axis=1)}

    module = Model()
    tf.saved_model.save(module, helpers.serving_dir(model),
                        signatures={"serving_default": module.serve})
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [model]}
    ours = _run(executor.Executor, tmp_path / "ours", inputs, _properties())
    theirs = _run(tfx_executor.Executor, tmp_path / "tfx", inputs, _properties())

    def by_record(artifact):
        logs = helpers.read_prediction_logs(
            f"{artifact[spec.INFERENCE_RESULT_KEY].uri}/prediction_logs-*")
        return {log.predict_log.request.inputs["examples"].string_val[0]: log.predict_log
                for log in logs}

    mine, expected = by_record(ours), by_record(theirs)
    assert sorted(mine) == sorted(expected) == sorted(records)
    for record, log in expected.items():
        assert mine[record].request == log.request
        np.testing.assert_allclose(tf.make_ndarray(mine[record].response.outputs["outputs"]),
                                   tf.make_ndarray(log.response.outputs["outputs"]), rtol=1e-6)
        sequence = tf.train.SequenceExample.FromString(record)
        steps = sequence.feature_lists.feature_list["s"].feature
        want = 10 * sequence.context.feature["f"].float_list.value[0] + sum(
            step.float_list.value[0] for step in steps)
        assert tf.make_ndarray(log.response.outputs["outputs"])[0, 0] == pytest.approx(want)


def test_sequence_examples_through_a_classify_signature_are_refused_as_tfx_refuses_them(
        tmp_path, sequence_examples):
    examples, _ = sequence_examples
    model = helpers.model_artifact(os.path.join(  # TFX's own classify model (Estimator)
        os.path.dirname(tfx_components.__file__), "testdata", "trainer", "current"))
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [model]}
    with pytest.raises(Exception, match="only supports raw or serialized tf.train.Example"):
        _run(tfx_executor.Executor, tmp_path / "tfx", inputs, _properties())
    with pytest.raises(ConfigError, match="'serving_default' is a tensorflow/serving/classify "
                                          "signature, which takes tf.Examples only"):
        _run(executor.Executor, tmp_path / "ours", inputs, _properties())
    assert not os.listdir(tmp_path / "ours" / spec.INFERENCE_RESULT_KEY)


class Affine(torch.nn.Module):
    def forward(self, x):
        return x[:, :1] * 10 + x[:, 1:]


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    artifact = helpers.model_artifact(str(tmp_path_factory.mktemp("torch")))
    torch.jit.save(torch.jit.script(Affine()), f"{helpers.serving_dir(artifact)}/model.pt")
    return artifact


def _torch_config(features):
    return InferenceConfig(models=[ModelConfig(
        name="affine", inputs=InputSpec(features=features), max_batch_size=8)]).to_json()


@pytest.fixture(params=["without schema", "with schema"])
def sequence_inputs(request, sequence_examples, sequence_schema, torch_model):
    """The SequenceExamples and the PyTorch model; with their Schema in one variant."""
    inputs = {spec.EXAMPLES_KEY: [sequence_examples[0]], spec.MODEL_KEY: [torch_model]}
    if request.param == "with schema":
        inputs[spec.SCHEMA_KEY] = [sequence_schema]
    return inputs


def test_sequence_examples_context_features_reach_other_frameworks(
        tmp_path, sequence_examples, sequence_inputs):
    ours = _run(executor.Executor, tmp_path, sequence_inputs,
                _properties(inference_config=_torch_config(["f", "g"])))
    logs = helpers.read_prediction_logs(
        f"{ours[spec.INFERENCE_RESULT_KEY].uri}/prediction_logs-*")
    assert len(logs) == len(sequence_examples[1])
    for log in logs:
        context = tf.train.SequenceExample.FromString(
            log.predict_log.request.inputs["examples"].string_val[0]).context.feature
        out = tf.make_ndarray(log.predict_log.response.outputs["output_0"])[0, 0]
        assert out == pytest.approx(10 * context["f"].float_list.value[0]
                                    + context["g"].float_list.value[0], rel=1e-6)


def test_a_feature_list_as_an_input_of_other_frameworks_is_refused_before_beam_starts(
        tmp_path, sequence_inputs):
    with pytest.raises(ConfigError, match=r"model 'affine' \(pytorch\) reads feature "
                                          r"list\(s\) \['s'\]"):
        _run(executor.Executor, tmp_path, sequence_inputs,
             _properties(inference_config=_torch_config(["f", "s"])))
    assert not os.listdir(tmp_path / spec.INFERENCE_RESULT_KEY)


def test_inference_config_as_a_runtime_parameter_compiles_for_vertex_and_runs_resolved(
        tmp_path, torch_model):
    importers = [tfx.dsl.Importer(source_uri=f"gs://bucket/{name}", artifact_type=kind)
                 .with_id(name) for name, kind in (("examples", standard_artifacts.Examples),
                                                   ("model", standard_artifacts.Model))]
    inferrer = BulkInferrer(
        examples=importers[0].outputs["result"], model=importers[1].outputs["result"],
        inference_config=data_types.RuntimeParameter(name="inference_config", ptype=str))
    pipeline = tfx.dsl.Pipeline(pipeline_name="runtime-config", pipeline_root="gs://bucket/p",
                                components=importers + [inferrer])
    submitted = _torch_config(FEATURES)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="image"),
        output_dir=str(tmp_path), output_filename="pipeline.json",
    ).run(pipeline, parameter_values={"inference_config": submitted})

    compiled = json.loads((tmp_path / "pipeline.json").read_text())
    root = compiled["pipelineSpec"]["root"]
    assert root["inputDefinitions"]["parameters"]["inference_config"] == {"type": "STRING"}
    task = root["dag"]["tasks"]["BulkInferrer"]["inputs"]["parameters"]
    assert task["inference_config"] == {"componentInputParameter": "inference_config"}
    resolved = compiled["runtimeConfig"]["parameters"]["inference_config"]["stringValue"]
    assert resolved == submitted

    # The executor gets the resolved value, as Vertex resolves it, and validates it.
    rng = np.random.RandomState(1)
    examples = helpers.examples_artifact(str(tmp_path / "examples"),
                                         {"eval": helpers.float_examples(rng.rand(9, 3),
                                                                         FEATURES)})
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [torch_model]}
    ours = _run(executor.Executor, tmp_path / "run", inputs,
                _properties(inference_config=resolved))
    assert ours[spec.INFERENCE_RESULT_KEY].get_int_custom_property("affine.predictions") == 9


@pytest.mark.parametrize("value, problem", [
    ("features=f0", "must be an InferenceConfig as JSON .*Expecting value"),
    ("[1, 2]", r"expected an object \(InferenceConfig\), got \[1, 2\]"),
    ('{"modles": []}', r"modles: unknown field \(did you mean 'models'\?\)"),
    ('{"models": [{"max_batch_size": 0}]}', "max_batch_size=0: must be a positive integer"),
])
def test_a_bad_inference_config_value_is_refused_when_the_executor_starts(
        tmp_path, torch_model, value, problem):
    examples = helpers.examples_artifact(str(tmp_path / "examples"), {"eval": []})
    inputs = {spec.EXAMPLES_KEY: [examples], spec.MODEL_KEY: [torch_model]}
    with pytest.raises(ConfigError, match=problem):
        _run(executor.Executor, tmp_path, inputs, _properties(inference_config=value))
    assert not os.listdir(tmp_path / spec.INFERENCE_RESULT_KEY)


def test_a_runtime_parameter_of_another_type_is_refused_where_the_pipeline_is_defined():
    examples = tfx.dsl.Importer(source_uri="gs://bucket/examples",
                                artifact_type=standard_artifacts.Examples).with_id("examples")
    with pytest.raises(TypeError, match="RuntimeParameter of type str"):
        BulkInferrer(examples=examples.outputs["result"], inference_config=(
            data_types.RuntimeParameter(name="inference_config", ptype=int)))
