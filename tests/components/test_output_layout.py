"""The executor's output files: TFX's layout (every split's logs in one file set, one
numbering), a folder per model for several, outputs written as if new (an earlier run's
shards and temporary folders removed), and no temporary folder left by a failed run."""
import os
import re

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import torch
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import bulk_inferrer_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.bulk_inferrer import executor, report, spec
from inference.config import InferenceConfig, InputSpec, ModelConfig
from tests import helpers
from tests.components.faulty_models import Offset

FEATURES = ["f0", "f1", "f2"]
SPLITS = {"train": 70, "eval": 40, "empty": 0}
TFX_SHARD = re.compile(r"prediction_logs-(\d{5})-of-(\d{5})\.gz")


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    rng = np.random.RandomState(5)
    return helpers.examples_artifact(
        str(tmp_path_factory.mktemp("examples")),
        {split: helpers.float_examples(rng.rand(n, 3), FEATURES)
         for split, n in SPLITS.items()})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    uris = {}
    for name, offset in (("a", 1.0), ("b", 2.0)):
        uris[name] = str(root / f"{name}.pt")
        torch.jit.save(torch.jit.script(Offset(offset)), uris[name])
    return uris


def _config(models, names=("a",)):
    # Batches of 8, so each split is written in several bundles.
    return InferenceConfig(models=[ModelConfig(
        name=name, uri=models[name], inputs=InputSpec(features=FEATURES), max_batch_size=8)
        for name in names])


def _outputs(root, examples_out=False):
    outputs = {spec.FAILURES_KEY: [helpers.output_artifact(spec.InferenceFailures,
                                                           str(root / "failures"))]}
    if examples_out:
        outputs[spec.OUTPUT_EXAMPLES_KEY] = [helpers.output_artifact(
            standard_artifacts.Examples, str(root / "output_examples"))]
    else:
        outputs[spec.INFERENCE_RESULT_KEY] = [helpers.output_artifact(
            standard_artifacts.InferenceResult, str(root / "inference_result"))]
    return outputs


def _run(tmp_path, examples, config, outputs, context=None, **props):
    exec_properties = {spec.MODEL_SPEC_KEY: "{}", spec.DATA_SPEC_KEY: "{}",
                       spec.INFERENCE_CONFIG_KEY: config.to_json(), **props}
    executor.Executor(context or helpers.beam_context(tmp_path)).Do(
        {spec.EXAMPLES_KEY: [examples]}, outputs, exec_properties)
    return outputs


def _tfx_file_set(folder):
    """The folder's entries, checked to be one TFX file set numbered 0..n-1 of n (beside
    the run report, in the first output's folder)."""
    names = sorted(set(os.listdir(folder)) - {report.REPORT_FILE_NAME})
    shards = [TFX_SHARD.fullmatch(name) for name in names]
    assert all(shards), names  # nothing else: no per-split names, no staging folder
    assert [int(s.group(1)) for s in shards] == list(range(len(names)))
    assert {int(s.group(2)) for s in shards} == {len(names)}
    return names


def test_every_split_lands_in_one_tfx_file_set(tmp_path, examples, models):
    pipelines = []

    def make_pipeline():
        pipelines.append(beam.Pipeline(argv=["--direct_num_workers=1"]))
        return pipelines[-1]

    context = base_beam_executor.BaseBeamExecutor.Context(
        tmp_dir=str(tmp_path / "tmp"), unique_id="layout", make_beam_pipeline_fn=make_pipeline)
    outputs = _run(tmp_path, examples, _config(models), _outputs(tmp_path), context)
    result = outputs[spec.INFERENCE_RESULT_KEY][0]

    names = _tfx_file_set(result.uri)
    assert len(names) >= 2  # two splits with records, each staging its own files
    logs = helpers.read_prediction_logs(f"{result.uri}/prediction_logs-?????-of-?????.gz")
    assert len(logs) == sum(SPLITS.values())
    assert result.get_int_custom_property("examples_in") == sum(SPLITS.values())

    # The splits' predictions are never flattened (Beam's portable DirectRunner would
    # materialise them): the Flatten ahead of the logs gathers the staged files' names.
    proto = pipelines[0].to_runner_api()
    transforms = proto.components.transforms
    producers = {pcoll: t.unique_name for t in transforms.values() if not t.subtransforms
                 for pcoll in t.outputs.values()}  # the primitive that makes each one
    gathers = [t for t in transforms.values() if t.unique_name == "GatherPredictionLogs[a]"]
    assert len(gathers) == 1
    sources = sorted(producers[pcoll] for pcoll in gathers[0].inputs.values())
    assert len(sources) == len(SPLITS)
    assert all(re.fullmatch(r"StagePredictionLogs\[a\]\[\w+\]/Stage", s)
               for s in sources), sources


def test_several_models_each_get_a_tfx_shaped_folder(tmp_path, examples, models):
    outputs = _run(tmp_path, examples, _config(models, ("a", "b")), _outputs(tmp_path))
    uri = outputs[spec.INFERENCE_RESULT_KEY][0].uri
    assert sorted(os.listdir(uri)) == ["a", "b", report.REPORT_FILE_NAME]
    for name, offset in (("a", 1.0), ("b", 2.0)):
        _tfx_file_set(os.path.join(uri, name))
        logs = helpers.read_prediction_logs(f"{uri}/{name}/prediction_logs-*.gz")
        assert len(logs) == sum(SPLITS.values())
        for log in logs[:5]:
            values = tf.train.Example.FromString(
                log.predict_log.request.inputs["examples"].string_val[0]).features.feature
            out = tf.make_ndarray(log.predict_log.response.outputs["output_0"])[0, 0]
            assert out == pytest.approx(
                sum(values[f].float_list.value[0] for f in FEATURES) + offset, rel=1e-6)


def _plant(path, records=3):
    helpers.write_tfrecords(str(path), [b"stale"] * records)


def test_an_earlier_runs_shards_and_temporary_folders_do_not_survive(tmp_path, examples,
                                                                     models):
    # What an earlier run into the same folders left: more shards than this run writes,
    # and the temporary folders of a run that died.
    for folder, prefix in (("inference_result", "prediction_logs"),
                           ("output_examples/Split-eval", "examples"),
                           ("failures", "failures")):
        for shard in range(7):
            _plant(tmp_path / folder / f"{prefix}-{shard:05d}-of-00007.gz")
        _plant(tmp_path / folder / f"beam-temp-{prefix}-0123abcd" / "part.gz")

    logs = _run(tmp_path, examples, _config(models), _outputs(tmp_path))
    result = logs[spec.INFERENCE_RESULT_KEY][0]
    _tfx_file_set(result.uri)
    assert len(helpers.read_prediction_logs(f"{result.uri}/prediction_logs-*")) == \
        sum(SPLITS.values())
    assert os.listdir(logs[spec.FAILURES_KEY][0].uri) == ["failures-00000-of-00001.gz"]

    output_spec = bulk_inferrer_pb2.OutputExampleSpec(output_columns_spec=[
        bulk_inferrer_pb2.OutputColumnsSpec(predict_output=bulk_inferrer_pb2.PredictOutput(
            output_columns=[bulk_inferrer_pb2.PredictOutputCol(
                output_key="output_0", output_column="score")]))])
    outputs = _run(tmp_path, examples, _config(models), _outputs(tmp_path, True),
                   **{spec.OUTPUT_EXAMPLE_SPEC_KEY: proto_utils.proto_to_json(output_spec)})
    split_dir = os.path.join(outputs[spec.OUTPUT_EXAMPLES_KEY][0].uri, "Split-eval")
    assert all(name.startswith("examples-") for name in os.listdir(split_dir))
    assert len(helpers.read_examples(f"{split_dir}/examples-*")) == SPLITS["eval"]


def test_a_failed_run_leaves_no_temporary_folder(tmp_path, examples, models):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK not a TorchScript archive")
    config = InferenceConfig(models=[ModelConfig(
        name="a", uri=str(broken), framework="pytorch", inputs=InputSpec(features=FEATURES))])
    with pytest.raises(RuntimeError, match="could not be loaded"):
        _run(tmp_path, examples, config, _outputs(tmp_path))
    left = [os.path.join(root, name) for root, dirs, files in os.walk(tmp_path)
            for name in dirs + files if name.startswith("beam-temp-")]
    assert not left
