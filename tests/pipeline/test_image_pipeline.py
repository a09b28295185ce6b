"""The image pipeline under LocalDagRunner: image files -> ImageExampleGen, a pretrained
classifier (built here) -> Importer, both -> BulkInferrer; no Trainer."""
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

import pipeline
from components import run_summary
from template import config, models
from tests import helpers


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("image_pipeline")
    images = str(root / "images")
    os.makedirs(images)
    files = helpers.write_colour_images(images)
    os.remove(os.path.join(images, "truncated.jpeg"))  # one bad file is enough here
    model_path = str(root / "pretrained" / "colours.pt")
    os.makedirs(os.path.dirname(model_path))
    module = helpers.save_colour_classifier(model_path)
    labels_file = str(root / "pretrained" / "labels.txt")
    with open(labels_file, "w") as f:
        f.write("\n".join(helpers.COLOUR_NAMES) + "\n")
    inference_config = models.image_classifier(labels_file, size=(16, 16), top_k=2)
    metadata_path = str(root / "metadata.db")
    tfx.orchestration.LocalDagRunner().run(pipeline.create_image_pipeline(
        pipeline_name="test-images",
        pipeline_root=str(root / "pipeline_root"),
        images_path=images,
        model_uri=model_path,
        inference_config=inference_config,
        max_failure_fraction=0.2,
        beam_pipeline_args=config.LOCAL_BEAM_PIPELINE_ARGS,
        metadata_connection_config=(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))))
    store = run_summary.open_store(metadata_path)
    by_type = {t.id: t.name for t in store.get_artifact_types()}
    artifacts = {}
    for artifact in store.get_artifacts():
        artifacts.setdefault(by_type[artifact.type_id], []).append(artifact)
    return dict(store=store, artifacts=artifacts, files=files, images=images, module=module,
                model_path=model_path, spec=inference_config.models[0].inputs.image)


def test_every_component_completes(image_run):
    store = image_run["store"]
    states = {node: state for node, state, _ in run_summary.node_states(
        store, run_summary.latest_run(store, "test-images"))}
    assert states == {"ImageExampleGen": "COMPLETE", "PretrainedModel": "COMPLETE",
                      "BulkInferrer.images": "COMPLETE"}


def test_the_imported_model_is_the_pretrained_file(image_run):
    [model] = image_run["artifacts"]["Model"]
    assert model.uri == image_run["model_path"]


def test_labels_equal_the_model_and_each_prediction_names_its_file(image_run):
    [result] = image_run["artifacts"]["InferenceResult"]
    logs = helpers.read_prediction_logs(f"{result.uri}/prediction_logs-*.gz")
    files = image_run["files"]
    expected = helpers.expected_labels(image_run["module"], sorted(files), image_run["spec"],
                                       top_k=2)
    got = {}
    for log in logs:
        example = tf.train.Example.FromString(
            log.predict_log.request.inputs["examples"].string_val[0])
        outputs = log.predict_log.response.outputs
        got[example.features.feature["file"].bytes_list.value[0].decode()] = (
            list(tf.make_ndarray(outputs["top_k_labels"])[0]),
            tf.make_ndarray(outputs["top_k_scores"])[0])
    assert sorted(got) == sorted(expected)
    for path, (labels, scores) in expected.items():
        assert got[path][0] == labels, path
        np.testing.assert_allclose(got[path][1], scores, atol=1e-6)
        if files[path]:
            assert labels[0] == files[path].encode()


def test_the_file_that_is_not_an_image_is_a_dead_letter_and_counts_add_up(image_run):
    [result] = image_run["artifacts"]["InferenceResult"]
    [failures] = image_run["artifacts"]["tfx_runinference.InferenceFailures"]
    [dead] = helpers.read_examples(f"{failures.uri}/failures-*.gz")
    feature = dead.features.feature
    assert feature["stage"].bytes_list.value == [b"preprocess"]
    assert b"recognises no image format" in feature["message"].bytes_list.value[0]
    record = tf.train.Example.FromString(feature["record"].bytes_list.value[0])
    assert record.features.feature["file"].bytes_list.value == [
        os.path.join(image_run["images"], "notes.jpeg").encode()]
    properties = {name: value.int_value for name, value in result.custom_properties.items()}
    assert (properties["examples_in"], properties["predictions"], properties["failures"]) == (
        len(image_run["files"]) + 1, len(image_run["files"]), 1)
