"""BulkInferrer executor: resolves artifacts, builds the Beam pipeline, records figures."""
import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional

import apache_beam as beam
from absl import logging
from tfx import types
from tfx.components.bulk_inferrer import prediction_to_example_utils
from tfx.components.util import model_utils, tfxio_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import bulk_inferrer_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils, proto_utils

from components.bulk_inferrer import spec
from inference import metrics
from inference.config import InferenceConfig
from inference.encoding import to_prediction_log
from inference.handler import ExampleModelHandler
from inference.transforms import Count, EncodePredictionLogs, InferExamples, \
    create_handlers, examples_counter

_TELEMETRY_DESCRIPTORS = ["BulkInferrer"]


class Executor(base_beam_executor.BaseBeamExecutor):
    """Runs every configured model on the examples' splits with Beam RunInference."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        blessing = input_dict.get(spec.MODEL_BLESSING_KEY)
        if blessing and not model_utils.is_model_blessed(
                artifact_utils.get_single_instance(blessing)):
            logging.info("Model on %s was not blessed: skipping inference.", blessing[0].uri)
            return

        config = _inference_config(exec_properties)
        model_uris = _model_uris(config, input_dict.get(spec.MODEL_KEY, []))
        handlers = create_handlers(config, model_uris, _schema(input_dict))
        data_spec = _proto(exec_properties, spec.DATA_SPEC_KEY, bulk_inferrer_pb2.DataSpec())
        examples = input_dict[spec.EXAMPLES_KEY]
        split_uris = _split_uris(examples, data_spec)
        if not split_uris:
            raise ValueError(f"no example splits to infer: data_spec asks for "
                             f"{list(data_spec.example_splits)}, the examples have "
                             f"{artifact_utils.decode_split_names(examples[0].split_names)}")

        inference_result = _single(output_dict, spec.INFERENCE_RESULT_KEY)
        output_examples = _single(output_dict, spec.OUTPUT_EXAMPLES_KEY)
        output_example_spec = _proto(exec_properties, spec.OUTPUT_EXAMPLE_SPEC_KEY,
                                     bulk_inferrer_pb2.OutputExampleSpec())
        if output_examples:
            output_examples.split_names = artifact_utils.encode_split_names(sorted(split_uris))

        tfxio_factory = tfxio_utils.get_tfxio_factory_from_artifact(
            examples, _TELEMETRY_DESCRIPTORS, schema=None, read_as_raw_records=True,
            raw_record_column_name="unused")
        pipeline = self._make_beam_pipeline()
        per_model: Dict[str, list] = {name: [] for name in handlers}
        for split, uri in sorted(split_uris.items()):
            tfxio = tfxio_factory([io_utils.all_files_pattern(uri)])
            records = (pipeline
                       | f"ReadData[{split}]" >> tfxio.RawRecordBeamSource()
                       | f"CountExamples[{split}]" >> Count(examples_counter(split)))
            results = records | f"Infer[{split}]" >> InferExamples(handlers)
            for name, pcoll in results.items():
                per_model[name].append(pcoll)
            if output_examples:
                _write_examples(results, handlers, config, output_example_spec,
                                artifact_utils.get_split_uri([output_examples], split), split)
        if inference_result:
            for name, pcolls in per_model.items():
                _write_prediction_logs(pcolls, handlers[name],
                                       _logs_dir(inference_result.uri, name, len(handlers)))

        started = time.time()
        result = pipeline.run()
        result.wait_until_finish()
        seconds = time.time() - started
        figures = metrics.model_figures(result, handlers, split_uris, seconds)
        for artifact in (inference_result, output_examples):
            if artifact:
                _record_figures(artifact, figures, seconds)
        for name, f in figures.items():
            logging.info("BulkInferrer model %r: %s", name, dataclasses.asdict(f))


def _inference_config(exec_properties: Mapping[str, Any]) -> InferenceConfig:
    text = exec_properties.get(spec.INFERENCE_CONFIG_KEY)
    config = InferenceConfig.from_json(text) if text else InferenceConfig()
    model_spec = _proto(exec_properties, spec.MODEL_SPEC_KEY, bulk_inferrer_pb2.ModelSpec())
    # TFX's ModelSpec (signature names, tags) applies to TensorFlow models, as in TFX.
    for model in config.models:
        if model.framework in (None, "tensorflow"):
            model.options.setdefault("signature_name", list(model_spec.model_signature_name))
            model.options.setdefault("tag", list(model_spec.tag))
    return config.validate()


def _model_uris(config: InferenceConfig, models: List[types.Artifact]) -> Dict[str, str]:
    """Model name -> serving model path, for models that take theirs from the input channel."""
    uris = {}
    for model in config.models:
        if model.uri:
            continue
        if model.model_input >= len(models):
            raise ValueError(
                f"model {model.name!r} has no uri and wants Model input #{model.model_input}, "
                f"but the component got {len(models)} Model artifact(s); connect `model` or "
                f"set the uri in the inference config")
        artifact = models[model.model_input]
        uris[model.name] = path_utils.serving_model_path(
            artifact.uri, path_utils.is_old_model_artifact(artifact))
    return uris


def _schema(input_dict) -> Optional[Any]:
    schema = input_dict.get(spec.SCHEMA_KEY)
    if not schema:
        return None
    return io_utils.SchemaReader().read(
        io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(schema)))


def _split_uris(examples: List[types.Artifact], data_spec) -> Dict[str, str]:
    uris = {}
    for artifact in examples:
        for split in artifact_utils.decode_split_names(artifact.split_names):
            if not data_spec.example_splits or split in data_spec.example_splits:
                uris[split] = artifact_utils.get_split_uri([artifact], split)
    return uris


def _proto(exec_properties, key, message):
    if exec_properties.get(key):
        proto_utils.json_to_proto(exec_properties[key], message)
    return message


def _single(output_dict, key) -> Optional[types.Artifact]:
    artifacts = output_dict.get(key)
    return artifact_utils.get_single_instance(artifacts) if artifacts else None


def _logs_dir(uri: str, model_name: str, model_count: int) -> str:
    """TFX's layout for one model (`<uri>/prediction_logs-*`); a folder per model for more."""
    return uri if model_count == 1 else os.path.join(uri, model_name)


def _write_prediction_logs(pcolls, handler: ExampleModelHandler, folder: str):
    name = handler.model_name
    _ = (pcolls
         | f"Flatten[{name}]" >> beam.Flatten()
         | f"EncodePredictionLogs[{name}]" >> EncodePredictionLogs(
             handler.output_names)
         | f"WritePredictionLogs[{name}]" >> beam.io.WriteToTFRecord(
             os.path.join(folder, spec.PREDICTION_LOGS_FILE_NAME), file_name_suffix=".gz"))


def _write_examples(results, handlers, config: InferenceConfig, output_example_spec,
                    split_uri: str, split: str):
    """Examples with prediction columns, as TFX's BulkInferrer writes them (first model)."""
    name = config.models[0].name
    output_names = handlers[name].output_names
    _ = (results[name]
         | f"ToExamples[{split}]" >> beam.Map(
             lambda r: prediction_to_example_utils.convert(
                 to_prediction_log(r, output_names), output_example_spec).SerializeToString())
         | f"WriteExamples[{split}]" >> beam.io.WriteToTFRecord(
             os.path.join(split_uri, spec.EXAMPLES_FILE_NAME), file_name_suffix=".gz"))


def _record_figures(artifact: types.Artifact, figures, seconds: float):
    """Per-run figures as custom properties, visible in ML Metadata."""
    total_in = max((f.examples_in for f in figures.values()), default=0)
    artifact.set_int_custom_property("examples_in", total_in)
    artifact.set_int_custom_property("predictions", sum(f.predictions for f in figures.values()))
    artifact.set_int_custom_property("failures", sum(f.failures for f in figures.values()))
    artifact.set_float_custom_property("pipeline_seconds", round(seconds, 3))
    artifact.set_string_custom_property("models", ",".join(figures))
    for name, f in figures.items():
        for field, value in dataclasses.asdict(f).items():
            key = f"{name}.{field}"
            if isinstance(value, int):
                artifact.set_int_custom_property(key, value)
            else:
                artifact.set_float_custom_property(key, round(value, 3))
    artifact.set_string_custom_property(
        "figures", json.dumps({n: dataclasses.asdict(f) for n, f in figures.items()}))
