"""Images end to end, as the Dataflow ML example: files read by glob, decoded, resized and
normalised in the engine, run through a classifier built here, labelled from configuration;
the file's path travels to the outputs, bad files end as dead letters, counts add up."""
import glob
import json
import os
import time

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from inference.config import (
    ConfigError,
    ImageSpec,
    InferenceConfig,
    InputSpec,
    LabelSpec,
    ModelConfig,
)
from inference.data import decoding, images
from inference.data.failures import FAILURES_TAG
from inference.data.results import FilePosition
from inference.engine.models import create_handlers
from inference.engine.transforms import Encode, InferExamples
from inference.io import encoding, rows
from inference.io.dead_letters import WriteFailures, read_failures
from inference.io.image_files import ReadImages, image_example
from inference.io.records import WriteRecordChunks
from inference.observe import metrics
from tests import helpers

SIZE = [16, 16]
IMAGENET = dict(scale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("images"))
    return folder, helpers.write_colour_images(folder)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("classifier") / "model.pt")
    return path, helpers.save_colour_classifier(path)


def _config(model_uri, labels_file, **image):
    return InferenceConfig(models=[ModelConfig(
        name="colours", uri=model_uri, max_batch_size=4,
        inputs=InputSpec(features=["image"], image=ImageSpec(size=SIZE, layout="NCHW",
                                                             **image)),
        labels=LabelSpec(file=labels_file, softmax=True, top_k=2))])


@pytest.fixture(scope="module")
def run(image_folder, classifier, tmp_path_factory):
    """The engine on the image folder, as the README shows it; what it wrote and counted."""
    folder, _ = image_folder
    out = tmp_path_factory.mktemp("out")
    labels_file = str(out / "labels.txt")
    with open(labels_file, "w") as f:
        f.write("\n".join(helpers.COLOUR_NAMES) + "\n")
    config = _config(classifier[0], labels_file, **IMAGENET)
    row_spec = rows.RowSpec.parse("file:STRING", "label:STRING,score,"
                                  "top_k_labels:ARRAY<STRING>")
    handlers = create_handlers(config)
    started = time.time()
    pipeline = beam.Pipeline()
    read = pipeline | ReadImages([os.path.join(folder, "*")])
    inferred = read.main | InferExamples(handlers, config)
    logs = inferred.predictions["colours"] | Encode(encoding.encode_logs)
    _ = logs.main | WriteRecordChunks(str(out / "prediction_logs"))
    _ = (inferred.predictions["colours"] | beam.FlatMap(row_spec.to_rows)
         | beam.Map(lambda row: rows.to_json(row).decode())
         | beam.io.WriteToText(str(out / "rows"), ".json"))
    _ = ((read[FAILURES_TAG], inferred.failures, logs[FAILURES_TAG]) | beam.Flatten()
         | WriteFailures(str(out / "failures")))
    result = pipeline.run()
    result.wait_until_finish()
    figures = metrics.run_figures(result, config.models, [""], time.time() - started)
    written_rows = [json.loads(line) for name in glob.glob(str(out / "rows*.json"))
                    for line in open(name)]
    return (config, helpers.read_prediction_logs(str(out / "prediction_logs-*.gz")),
            list(read_failures(str(out / "failures-*.gz"))), written_rows, figures)


def test_labels_equal_the_model_on_the_same_pixels_and_the_file_travels(run, image_folder,
                                                                         classifier):
    config, logs, _, _, _ = run
    _, files = image_folder
    decodable = sorted(files)
    expected = helpers.expected_labels(classifier[1], decodable, config.models[0].inputs.image,
                                       top_k=2)
    by_file = {}
    for log in logs:
        example = tf.train.Example.FromString(
            log.predict_log.request.inputs["examples"].string_val[0])
        path = example.features.feature["file"].bytes_list.value[0].decode()
        by_file[path] = {name: tf.make_ndarray(tensor)[0]
                         for name, tensor in log.predict_log.response.outputs.items()}
        with open(path, "rb") as f:
            assert example.features.feature["image"].bytes_list.value[0] == f.read()
    assert sorted(by_file) == decodable
    for path, (labels, scores) in expected.items():
        got = by_file[path]
        assert got["label"] == labels[0]
        assert list(got["top_k_labels"]) == labels
        np.testing.assert_allclose(got["top_k_scores"], scores, atol=1e-6)
        assert got["score"] == got["top_k_scores"][0]
        assert got["output_0"].shape == (3,)  # the logits stay
        if files[path]:
            assert got["label"] == files[path].encode(), path


def test_rows_carry_the_file_and_the_labels(run, image_folder):
    _, logs, _, written_rows, _ = run
    labels = {tf.train.Example.FromString(log.predict_log.request.inputs["examples"]
                                          .string_val[0]).features.feature["file"]
              .bytes_list.value[0].decode(): tf.make_ndarray(
                  log.predict_log.response.outputs["label"])[0].decode() for log in logs}
    assert {row["file"]: row["label"] for row in written_rows} == labels
    assert all(row["top_k_labels"][0] == row["label"] and 0 < row["score"] <= 1
               for row in written_rows)


def test_files_that_are_not_images_are_dead_letters_naming_them(run, image_folder):
    _, _, failures, _, _ = run
    folder, _ = image_folder
    by_source = {failure.source: failure for failure in failures}
    assert sorted(by_source) == [os.path.join(folder, "notes.jpeg"),
                                 os.path.join(folder, "truncated.jpeg")]
    for path, failure in by_source.items():
        assert (failure.stage, failure.model) == ("preprocess", "colours")
        assert failure.message.startswith("feature 'image' is not an image Pillow can "
                                          "decode: ")
        assert tf.train.Example.FromString(failure.record).features.feature[
            "file"].bytes_list.value[0] == path.encode()
    assert "recognises no image format" in by_source[os.path.join(folder, "notes.jpeg")].message
    assert "truncated" in by_source[os.path.join(folder, "truncated.jpeg")].message.lower()


def test_counts_add_up(run, image_folder):
    _, logs, failures, _, figures = run
    _, files = image_folder
    model = figures.models["colours"]
    assert figures.examples_in[""] == len(files) + 2
    assert (model.examples_in, model.predictions, model.failures) == (
        len(files) + 2, len(logs), len(failures))
    assert model.failures_by_stage == {"preprocess": 2}
    assert figures.unaccounted("shadow") == {"": 0}


def test_unreadable_and_oversized_files_are_read_dead_letters(image_folder, tmp_path):
    folder, files = image_folder
    biggest = max(os.path.getsize(path) for path in files)
    with beam.Pipeline() as pipeline:
        read = pipeline | ReadImages([os.path.join(folder, "*.png")], split="s",
                                        max_file_bytes=biggest - 1)
        _ = read[FAILURES_TAG] | WriteFailures(str(tmp_path / "failures"))
    failures = list(read_failures(str(tmp_path / "failures-*.gz")))
    oversized = [path for path in files if path.endswith(".png")
                 and os.path.getsize(path) == biggest]
    assert [(f.stage, f.split, f.source) for f in failures] == [("read", "s", oversized[0])]
    assert "more than max_file_bytes" in failures[0].message


@pytest.mark.parametrize("spec", [
    ImageSpec(size=[12, 10], channels=1, fit="center_crop", scale=1 / 255, mean=[0.5],
              std=[0.25]),
    ImageSpec(size=[8, 14], layout="NCHW", **IMAGENET),
])
def test_input_mapping_gives_the_pixels_pillow_gives(image_folder, spec):
    _, files = image_folder
    paths = sorted(files)
    values = []
    for path in paths:
        with open(path, "rb") as f:
            values.append(f.read())
    column = decoding.Column(np.array(values, dtype=object),
                             np.ones(len(values), dtype=np.int64),
                             np.zeros(len(values), dtype=bool))
    got = decoding.InputMapping(InputSpec(features=["image"], image=spec))({"image": column})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.stack([helpers.image_pixels(p, spec) for p in paths]),
                               atol=1e-5)
    assert images.normalise(images.decode(values, spec)[0], spec, "float64").dtype == np.float64


def test_image_and_label_settings_are_checked_when_the_config_is_built(tmp_path, classifier):
    bad = InferenceConfig(models=[ModelConfig(
        name="m", inputs=InputSpec(features=["a", "b"], dtype="int64", padding="longest",
                                   image=ImageSpec(size=[0], channels=2, layout="HWC",
                                                   mean=[1.0, 2.0, 3.0], std=[0.0])),
        labels=LabelSpec(names=["x"], file="labels.txt", top_k=0))])
    with pytest.raises(ConfigError) as raised:
        bad.validate()
    for problem in ("inputs.image.size=[0]", "inputs.image.channels=2",
                    "inputs.image.layout='HWC'", "inputs.image.mean=[1.0, 2.0, 3.0]",
                    "inputs.image.std=[0.0]: must not be 0", "inputs.dtype='int64'",
                    "inputs.padding and inputs.width do not apply to images",
                    "several image features need layout='dict'",
                    "either in labels.names or in labels.file", "labels.top_k=0"):
        assert problem in str(raised.value)
    with pytest.raises(ConfigError, match="models\\[0\\].inputs.image.size\\[1\\]: expected "
                                          "an integer"):
        InferenceConfig.from_dict({"models": [{"inputs": {"image": {"size": [2, "2"]}}}]})
    with pytest.raises(ConfigError, match="cannot read labels.file .*missing.txt"):
        create_handlers(_config(classifier[0], str(tmp_path / "missing.txt")))
    (tmp_path / "one.txt").write_text("a\n\n")
    with pytest.raises(ConfigError, match="labels.top_k=2 is more than the 1 class names"):
        create_handlers(_config(classifier[0], str(tmp_path / "one.txt")))


def test_scores_that_do_not_fit_the_labels_fail_at_postprocess(image_folder, classifier):
    _, files = image_folder
    config = InferenceConfig(models=[ModelConfig(
        name="m", uri=classifier[0], labels=LabelSpec(names=["a", "b"]),
        inputs=InputSpec(features=["image"], image=ImageSpec(size=SIZE, layout="NCHW")))])
    handler = create_handlers(config)["m"]
    records = []
    for path in sorted(files)[:3]:
        with open(path, "rb") as f:
            records.append(image_example(path, f.read()))
    [result] = handler.run_inference([(FilePosition("images", 0), records)], handler.load_model())
    assert result.records == []
    assert [(f.stage, f.record) for f in result.failures] == [("postprocess", r)
                                                                for r in records]
    assert "output 'output_0' scores 3 classes; labels name 2" in result.failures[0].message
