"""BulkInferrer executor: resolves artifacts, builds the Beam pipeline, records figures."""
import dataclasses
import functools
import json
import os
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional

import apache_beam as beam
from absl import logging
from tensorflow_serving.apis import prediction_log_pb2
from tfx import types
from tfx.components.bulk_inferrer import prediction_to_example_utils
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import bulk_inferrer_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils, proto_utils

from components.bulk_inferrer import drift, payloads, report, samples, spec
from inference import bounded, frameworks, replay
from inference.config import ConfigError, InferenceConfig
from inference.engine.worker_health import worker_deaths
from inference.io import encoding, publish
from inference.io.records import ReadRecords
from inference.observe import metrics, progress

# TFX's executor's names of the output file prefixes (TFX's own tests read them).
_PREDICTION_LOGS_FILE_NAME = spec.PREDICTION_LOGS_FILE_NAME
_EXAMPLES_FILE_NAME = spec.EXAMPLES_FILE_NAME


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
        fail_on_empty_input = bool(exec_properties.get(spec.FAIL_ON_EMPTY_INPUT_KEY))
        replayed = input_dict.get(spec.REPLAY_FAILURES_KEY)
        read = ReadRecords
        if replayed:
            config, splits, read = _replay(config, replayed)
            sequence_examples = False
        else:
            examples = input_dict.get(spec.EXAMPLES_KEY)
            if not examples:
                raise ValueError("BulkInferrer needs `examples`, or `replay_failures` (an "
                                 "earlier run's `failures`) to re-score its dead letters")
            splits = {split: [io_utils.all_files_pattern(uri)] for split, uri in _split_uris(
                examples, _proto(exec_properties, spec.DATA_SPEC_KEY,
                                 bulk_inferrer_pb2.DataSpec()), fail_on_empty_input).items()}
            sequence_examples = (payloads.payload_format(examples)
                                 == payloads.SEQUENCE_EXAMPLE)
        model_uris = _model_uris(config, input_dict.get(spec.MODEL_KEY, []))
        transform_graph = input_dict.get(spec.TRANSFORM_GRAPH_KEY)
        inference_result = _single(output_dict, spec.INFERENCE_RESULT_KEY)
        output_examples = _single(output_dict, spec.OUTPUT_EXAMPLES_KEY)
        failures = _single(output_dict, spec.FAILURES_KEY)
        failures_uri = failures.uri if failures else os.path.join(self._scratch_dir(),
                                                                  spec.FAILURES_KEY)
        if output_examples:
            output_examples.split_names = artifact_utils.encode_split_names(sorted(splits))
        names = [model.name for model in config.models]
        # TFX's layout: one model's logs of every split in one file set (see bounded.Output).
        logs_prefixes = {name: os.path.join(_logs_dir(inference_result.uri, name, len(names)),
                                            spec.PREDICTION_LOGS_FILE_NAME)
                         for name in names} if inference_result else {}
        outputs = _outputs(splits, names, logs_prefixes, output_examples, _proto(
            exec_properties, spec.OUTPUT_EXAMPLE_SPEC_KEY,
            bulk_inferrer_pb2.OutputExampleSpec()))
        breadcrumbs = os.path.join(self._scratch_dir(), "workers")
        plan = bounded.make_plan(
            config, splits, outputs, os.path.join(failures_uri, spec.FAILURES_FILE_NAME),
            model_uris=model_uris, schema=_schema(input_dict),
            transform_dir=(artifact_utils.get_single_uri(transform_graph)
                           if transform_graph else None),
            sequence_examples=sequence_examples, breadcrumbs=breadcrumbs,
            samples_prefix=os.path.join(self._scratch_dir(), "samples", "predictions"),
            read=read)

        # Outputs are written as if new: what an earlier run into the same folders left
        # behind goes (its shards, when this run's are finalized; its temporary folders,
        # now), and so do this run's temporary folders if it fails.
        folders = {os.path.dirname(output.prefix) for output in outputs} | {failures_uri}
        _remove_temporary(folders)
        pipeline = self._make_beam_pipeline()
        plan.expand(pipeline)
        started = time.time()
        progress.start()
        try:
            result = pipeline.run()
            if _job_only(pipeline):
                logging.info("The Beam job was built (dry run or template), not run: no "
                             "figures.")
                return
            result.wait_until_finish()
        except Exception as e:
            _remove_temporary(folders)
            deaths = worker_deaths(breadcrumbs)
            if deaths:
                raise RuntimeError(
                    f"BulkInferrer: a Beam worker process died ({str(e).splitlines()[0]}):"
                    "\n  - " + "\n  - ".join(deaths)) from e
            raise
        finally:
            progress.stop()
        if not splits:  # no split to read: the empty logs TFX's sink writes
            for prefix in logs_prefixes.values():
                publish.empty_file_set(prefix)
        figures = metrics.run_figures(result, config.models, splits, time.time() - started)
        for artifact in (inference_result, output_examples, failures):
            if artifact:
                _record_figures(artifact, figures)
        for name, f in figures.models.items():
            logging.info("BulkInferrer model %r: %s", name, dataclasses.asdict(f))
        taken = {m.name: samples.from_run(plan.samples_path(m.name),
                                          figures.models[m.name].predictions)
                 for m in config.models}
        checked = drift.check(input_dict, output_dict, exec_properties, taken)
        self._write_report(plan, figures, output_dict, failures_uri, taken, checked)
        bounded.verdict(figures, config, plan.splits, _max_failure_fraction(exec_properties),
                        plan.failures_prefix, who="BulkInferrer",
                        fail_on_empty_input=fail_on_empty_input)
        drift.gate(checked)

    def _write_report(self, plan: bounded.Plan, figures, output_dict, failures_uri: str,
                      taken: Dict[str, samples.ModelSample], checked=None):
        """The run report, linked from every output artifact (custom property `report`);
        a report that cannot be written is logged, and does not fail the run."""
        inference_result = _single(output_dict, spec.INFERENCE_RESULT_KEY)
        outputs = [a for a in (inference_result, _single(output_dict, spec.OUTPUT_EXAMPLES_KEY),
                               _single(output_dict, spec.FAILURES_KEY)) if a]
        node = getattr(self._context, "pipeline_node", None)
        title = f"{node.node_info.id if node else 'BulkInferrer'}: run report"
        try:
            path = report.write_run_report(
                plan.config, figures, title, outputs[0].uri if outputs else failures_uri,
                taken, failures_uri, _single(output_dict, spec.REPORT_KEY), checked)
        except Exception:
            logging.exception("The run report could not be written.")
            return
        logging.info("Run report: %s", path)
        for artifact in outputs:
            artifact.set_string_custom_property("report", path)


    def _scratch_dir(self) -> str:
        """The execution's temporary folder (a new one when the context names none)."""
        try:
            return self._get_tmp_dir()
        except RuntimeError:  # a context without tmp_dir or unique_id
            if not getattr(self, "_scratch", None):
                self._scratch = tempfile.mkdtemp(prefix="bulk_inferrer-")
            return self._scratch


class _ExamplesEncoder:
    """Output examples as TFX's BulkInferrer writes them: each input example with the
    prediction columns `output_example_spec` names, from the record's PredictionLog."""

    def __init__(self, output_example_spec):
        self._spec = output_example_spec

    def __call__(self, result) -> List[bytes]:
        return [prediction_to_example_utils.convert(
            prediction_log_pb2.PredictionLog.FromString(log), self._spec).SerializeToString()
            for log in encoding.encode_logs(result)]


def _outputs(splits, names, logs_prefixes, output_examples, output_example_spec
             ) -> List[bounded.Output]:
    """Per split and model: its PredictionLogs (when the component has `inference_result`)
    and its output examples (when it has `output_examples`)."""
    outputs = []
    for split in sorted(splits):
        for name in names:
            if name in logs_prefixes:
                outputs.append(bounded.Output(name, split, logs_prefixes[name],
                                              encoding.encode_logs, "PredictionLogs"))
            if output_examples:
                prefix = spec.EXAMPLES_FILE_NAME if len(names) == 1 else (
                    f"{spec.EXAMPLES_FILE_NAME}-{name}")
                outputs.append(bounded.Output(
                    name, split, os.path.join(artifact_utils.get_split_uri(
                        [output_examples], split), prefix),
                    _ExamplesEncoder(output_example_spec), "Examples"))
    return outputs


def _job_only(pipeline: beam.Pipeline) -> bool:
    """True when the runner only builds the job (Dataflow --dry_run, --template_location)."""
    options = pipeline.options.get_all_options()
    return bool(options.get("dry_run") or options.get("template_location"))


def _inference_config(exec_properties: Mapping[str, Any]) -> InferenceConfig:
    """The execution's InferenceConfig, validated; its JSON may come from a
    RuntimeParameter set at submission, so a bad one is reported here, first."""
    text = exec_properties.get(spec.INFERENCE_CONFIG_KEY)
    try:
        config = InferenceConfig.from_json(text) if text else InferenceConfig()
    except json.JSONDecodeError as e:
        raise ConfigError(f"inference_config must be an InferenceConfig as JSON (what "
                          f"InferenceConfig(...).to_json() writes); got {text[:300]!r}: "
                          f"{e}") from e
    config = config.validate(bounded=True)
    model_spec = _proto(exec_properties, spec.MODEL_SPEC_KEY, bulk_inferrer_pb2.ModelSpec())
    # TFX's ModelSpec (signature names, tags) applies to the models run through SavedModel
    # signatures (TensorFlow's, as in TFX), and to those whose framework is detected later.
    for model in config.models:
        if model.framework is None or frameworks.declared(model.framework).signatures:
            model.options.setdefault("signature_name", list(model_spec.model_signature_name))
            model.options.setdefault("tag", list(model_spec.tag))
    return config.validate(bounded=True)


def _model_uris(config: InferenceConfig, models: List[types.Artifact]) -> Dict[str, str]:
    """Model name -> serving model path, for models that take theirs from the input channel."""
    uris = {}
    for model in config.models:
        if model.uri:
            continue
        artifact = _pick_model(models, model.model_input)
        if artifact is None:
            raise ValueError(
                f"model {model.name!r} has no uri and wants Model input {model.model_input!r},"
                f" but the component got {len(models)} Model artifact(s) "
                f"({[m.uri for m in models]}); connect `model` (a union of channels for "
                f"several) or set the uri in the inference config")
        uris[model.name] = _model_path(artifact)
    return uris


def _model_path(artifact: types.Artifact) -> str:
    """Where a Model artifact's model is: a Trainer's serving model (TFX's layout,
    `<uri>/Format-Serving`), else the artifact's uri itself: a pretrained model file or
    folder registered as it is, by a `tfx.dsl.Importer`."""
    path = path_utils.serving_model_path(artifact.uri,
                                         path_utils.is_old_model_artifact(artifact))
    return path if fileio.exists(path) else artifact.uri


def _pick_model(models: List[types.Artifact], wanted) -> Optional[types.Artifact]:
    """The Model artifact at index `wanted`, or the one a component named `wanted` made."""
    if isinstance(wanted, int):
        ordered = sorted(models, key=lambda m: (m.id, m.uri))
        return ordered[wanted] if wanted < len(ordered) else None
    for artifact in models:
        if artifact.producer_component == wanted or f"/{wanted}/" in artifact.uri:
            return artifact
    return None


def _schema(input_dict) -> Optional[Any]:
    schema = input_dict.get(spec.SCHEMA_KEY)
    if not schema:
        return None
    return io_utils.SchemaReader().read(
        io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(schema)))


def _replay(config: InferenceConfig, failures: List[types.Artifact]):
    """(the config of the one model to replay, split -> dead-letter patterns, the Plan's
    reader) for re-scoring the replayable dead letters of earlier runs' `failures`."""
    patterns = [os.path.join(a.uri, f"{spec.FAILURES_FILE_NAME}-*") for a in failures]
    counts, skipped = replay.count_dead_letters(patterns)
    for stage, count in sorted(skipped.items()):
        logging.info("BulkInferrer replay: %d dead letter(s) at stage %r are not replayed "
                     "(bad input fails again).", count, stage)
    if len(counts) > 1:
        raise ConfigError(f"replay_failures holds dead letters of models {sorted(counts)}: "
                          f"replay one at a time (an inference_config with that model "
                          f"alone), or use python -m inference.replay, which runs each")
    if not counts:
        logging.warning("BulkInferrer replay: no dead letter to replay in %s", patterns)
        return config, {}, ReadRecords
    (model, by_split), = counts.items()
    logging.info("BulkInferrer replay: model %r, %d dead letter(s) of split(s) %s", model,
                 sum(by_split.values()), sorted(by_split))
    read = functools.partial(replay.ReadDeadLetters, model=model)
    return replay.model_config(config, model), {s: patterns for s in by_split}, read


def _split_uris(examples: List[types.Artifact], data_spec,
                fail_on_empty_input: bool) -> Dict[str, str]:
    """Split -> examples folder, for the splits `data_spec` names (all when it names none).

    A split `data_spec` names that the examples lack is left out, as TFX does, with a
    warning; with `fail_on_empty_input`, having no split to infer is an error."""
    uris, present = {}, []
    for artifact in examples:
        for split in artifact_utils.decode_split_names(artifact.split_names):
            present.append(split)
            if not data_spec.example_splits or split in data_spec.example_splits:
                uris[split] = artifact_utils.get_split_uri([artifact], split)
    absent = sorted(set(data_spec.example_splits) - set(present))
    if absent:
        logging.warning("BulkInferrer: data_spec names split(s) %s, which the examples do "
                        "not have (they have %s): nothing is inferred for them.",
                        absent, present)
    if not uris and fail_on_empty_input:
        raise ValueError(f"no example splits to infer: data_spec asks for "
                         f"{list(data_spec.example_splits)}, the examples have {present} "
                         f"(fail_on_empty_input=True)")
    return uris


def _remove_temporary(folders):
    """Deletes the temporary folders (`beam-temp-*`: Beam's sinks', and the staging folders
    of `inference.io.publish`) in `folders`."""
    for path in [p for folder in folders for p in fileio.glob(f"{folder}/beam-temp-*")]:
        if fileio.isdir(path):
            fileio.rmtree(path)
        else:
            fileio.remove(path)


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


def _max_failure_fraction(exec_properties) -> float:
    value = exec_properties.get(spec.MAX_FAILURE_FRACTION_KEY)
    return spec.DEFAULT_MAX_FAILURE_FRACTION if value is None else float(value)


def _record_figures(artifact: types.Artifact, figures: metrics.RunFigures):
    """Per-run figures as custom properties, visible in ML Metadata."""
    models = figures.models.values()
    artifact.set_int_custom_property("examples_in", sum(figures.examples_in.values()))
    artifact.set_int_custom_property("predictions", sum(f.predictions for f in models))
    artifact.set_int_custom_property(
        "failures", sum(f.failures for f in models) + sum(figures.read_failures.values())
        + sum(figures.routing_failures.values()))
    artifact.set_float_custom_property("pipeline_seconds", round(figures.seconds, 3))
    artifact.set_string_custom_property("models", ",".join(figures.models))
    for name, f in figures.models.items():
        # A remote model's request figures (`requests`, `retries`, ...) sit beside the rest.
        for field, value in {**dataclasses.asdict(f), **f.remote}.items():
            key = f"{name}.{field}"
            if isinstance(value, int):
                artifact.set_int_custom_property(key, value)
            elif isinstance(value, float):
                artifact.set_float_custom_property(key, round(value, 3))
    for name in ("damaged_files", "unreadable_files", "unread_bytes"):
        artifact.set_int_custom_property(name, sum(getattr(figures, name).values()))
    artifact.set_string_custom_property("figures", json.dumps({
        "models": {n: dataclasses.asdict(f) for n, f in figures.models.items()},
        "examples_in": figures.examples_in, "read_failures": figures.read_failures,
        "damaged_files": figures.damaged_files, "unreadable_files": figures.unreadable_files,
        "unread_bytes": figures.unread_bytes}))
