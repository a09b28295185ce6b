"""The BulkInferrer's drift check: artifacts in and out around `inference.observe.drift`.

After the Beam pipeline has written the run's outputs, the run's bounded sample of
predictions is described (TFDV statistics, written as the `prediction_statistics`
output, StatisticsGen's layout) and compared with the baseline's: the `baseline` input,
another run's `prediction_statistics`; `previous_run` wires it to the latest one of the
same component in the same pipeline, which the orchestrator resolves in ML Metadata
(outputs of failed runs are not published, so they are never a baseline). With a
`statistics` input (StatisticsGen's, of the training data) and the `schema`, the
sampled input records (tf.Examples; not SequenceExamples) are checked for
training/serving skew too. The anomalies are
written as ExampleValidator writes them (`anomalies`, ExampleAnomalies,
`Split-<split>/SchemaDiff.pb`, custom property `blessed`), each measurement is a custom
property (`<model>.<output>.drift`, `<feature>.skew`), and the gate (`drift_config`'s
action "fail") raises once all of that is written.
"""
import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.input_resolution import canned_resolver_functions
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.utils import io_utils

from components.bulk_inferrer import payloads, samples, spec
from inference.observe import drift
from inference.observe.drift import DriftConfig, DriftError

SCHEMA_DIFF_FILE_NAME = "SchemaDiff.pb"  # ExampleValidator's
_TRAINING_SPLIT = "train"


def previous_run(component_id: str) -> types.BaseChannel:
    """The `prediction_statistics` of the last successful run of the BulkInferrer
    `component_id` in this pipeline (none on its first run): pass it as `baseline`.

    A channel by producer and output key, not the component's own output channel: it
    adds no edge to the pipeline's graph, and the orchestrator resolves it in ML Metadata
    when the component is about to run, before its own outputs exist."""
    return canned_resolver_functions.latest_created(channel.Channel(
        type=standard_artifacts.ExampleStatistics, producer_component_id=component_id,
        output_key=spec.PREDICTION_STATISTICS_KEY))


@dataclasses.dataclass
class Split:
    """One split's check: statistics, the baseline's, anomalies and measurements."""
    current: statistics_pb2.DatasetFeatureStatisticsList
    baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList]
    anomalies: anomalies_pb2.Anomalies
    drift: List[drift.Measurement]
    skew: List[drift.Measurement]
    vectors: Dict[str, np.ndarray]  # the run's sampled embeddings, by `<model>.<output>`


@dataclasses.dataclass
class Result:
    """A run's drift check, for the run report and the gate."""
    config: DriftConfig
    baseline_uri: Optional[str]  # None: no baseline (the first run)
    splits: Dict[str, Split]

    @property
    def drifted(self) -> List[str]:
        return [f"split {split!r}: {m.feature} {m.measure} {m.value:.4g} > {m.threshold}"
                for split, s in self.splits.items() for m in s.drift + s.skew if m.drifted]


def config(exec_properties: Mapping[str, Any]) -> DriftConfig:
    text = exec_properties.get(spec.DRIFT_CONFIG_KEY)
    return DriftConfig.from_json(text) if text else DriftConfig()


def check(input_dict, output_dict, exec_properties,
          taken: Mapping[str, samples.ModelSample]) -> Optional[Result]:
    """Describes the run's sampled predictions (model -> its sample, `taken`), compares
    them with the baseline's and the inputs with the training statistics, writes the
    outputs and records the figures; logs what it found. None when the component has
    neither output (a pipeline compiled before they were)."""
    stats_out = _single(output_dict, spec.PREDICTION_STATISTICS_KEY)
    anomalies_out = _single(output_dict, spec.ANOMALIES_KEY)
    if stats_out is None and anomalies_out is None:
        return None
    settings = config(exec_properties)
    rows = {name: [drift.Row(h, p.split, p.outputs) for h, p in sample.predictions.items()]
            for name, sample in taken.items()}
    current = drift.statistics(rows)
    baseline = _single(input_dict, spec.BASELINE_KEY)
    training = _single(input_dict, spec.STATISTICS_KEY)
    schema = _schema(input_dict)
    records = {}  # the sampled input records (tf.Examples) by split and hash
    examples = input_dict.get(spec.EXAMPLES_KEY)  # none when replaying dead letters
    if not examples or payloads.payload_format(examples) != payloads.SEQUENCE_EXAMPLE:
        for sample in taken.values():
            for h, p in sample.predictions.items():
                records.setdefault(p.split, {}).setdefault(h, p.request)
    if training is not None and (schema is None or not records):
        logging.warning("BulkInferrer: no skew check: it needs the `schema` input beside "
                        "`statistics`, and tf.Examples (not SequenceExamples).")
    result = Result(settings, baseline.uri if baseline else None, {})
    for split in sorted(current):
        before = _baseline_split(baseline, split) if baseline else None
        vectors = drift.embeddings(rows, split)
        anomalies, measured = drift.compare(current[split], before, settings, vectors)
        skewed = []
        if training is not None and schema is not None and records.get(split):
            found, skewed = drift.skew(_training(training), drift.input_statistics(
                list(records[split].values()), schema), schema, settings)
            for info in found.anomaly_info.values():  # keyed as the drift's are
                anomalies.anomaly_info[_serialized(info.path)].CopyFrom(info)
            anomalies.drift_skew_info.extend(found.drift_skew_info)
        result.splits[split] = Split(current[split], before, anomalies, measured, skewed,
                                     vectors)
    _write(result, stats_out, anomalies_out)
    _record(result, [a for key in (spec.INFERENCE_RESULT_KEY, spec.OUTPUT_EXAMPLES_KEY,
                                   spec.PREDICTION_STATISTICS_KEY, spec.ANOMALIES_KEY)
                     for a in [_single(output_dict, key)] if a])
    _log(result)
    return result


def gate(result: Optional[Result]):
    """Raises DriftError when the run drifted and its drift_config's action is "fail"."""
    if result and result.drifted and result.config.action == "fail":
        raise DriftError("BulkInferrer: predictions drifted from the baseline ("
                         f"{result.baseline_uri}) beyond drift_config's thresholds "
                         "(action='fail'; the outputs and anomalies are written):\n  - "
                         + "\n  - ".join(result.drifted))


def _write(result: Result, stats_out, anomalies_out):
    """StatisticsGen's layout for the statistics, ExampleValidator's for the anomalies."""
    for artifact in (stats_out, anomalies_out):
        if artifact is not None:
            artifact.split_names = artifact_utils.encode_split_names(sorted(result.splits))
    for split, checked in result.splits.items():
        if stats_out is not None:
            io_utils.write_bytes_file(os.path.join(
                artifact_utils.get_split_uri([stats_out], split),
                stats_artifact_utils.BINARY_PB_BASENAME), checked.current.SerializeToString())
        if anomalies_out is not None:
            io_utils.write_bytes_file(os.path.join(
                artifact_utils.get_split_uri([anomalies_out], split), SCHEMA_DIFF_FILE_NAME),
                checked.anomalies.SerializeToString())
    if anomalies_out is not None:
        anomalies_out.set_json_value_custom_property("blessed", {
            split: int(not (s.anomalies.anomaly_info or s.anomalies.HasField(
                "dataset_anomaly_info"))) for split, s in result.splits.items()})


def _record(result: Result, artifacts: List[types.Artifact]):
    """Each measurement as a custom property (the largest over the splits), the baseline,
    and the verdict: "no_baseline", "drift" or "ok"."""
    values: Dict[str, float] = {}
    for checked in result.splits.values():
        for suffix, measured in (("drift", checked.drift), ("skew", checked.skew)):
            for m in measured:
                if m.value is not None:
                    key = f"{m.feature}.{suffix}"
                    values[key] = max(values.get(key, 0.0), float(m.value))
    verdict = ("drift" if result.drifted else
               "no_baseline" if result.baseline_uri is None else "ok")
    for artifact in artifacts:
        for key, value in values.items():
            artifact.set_float_custom_property(key, round(value, 6))
        artifact.set_string_custom_property("drift_baseline", result.baseline_uri or "")
        artifact.set_string_custom_property("drift_verdict", verdict)


def _log(result: Result):
    if result.baseline_uri is None:
        logging.warning("BulkInferrer: no baseline (the first run of this component, or no "
                        "`baseline` input): predictions are described, not compared.")
    for split, checked in result.splits.items():
        for m in checked.drift + checked.skew:
            logging.info("BulkInferrer drift, split %s: %s %s = %s (threshold %s)%s", split,
                         m.feature, m.measure, "-" if m.value is None else f"{m.value:.4g}",
                         m.threshold, " DRIFTED" if m.drifted else "")
    if result.drifted:
        logging.warning("BulkInferrer: drift from the baseline %s:\n  - %s",
                        result.baseline_uri, "\n  - ".join(result.drifted))


def _serialized(path) -> str:
    """A feature path as TFDV's SERIALIZED_PATH anomaly names write it ('a'.'b')."""
    return ".".join(f"'{step}'" for step in path.step)


def _baseline_split(artifact: types.Artifact, split: str):
    """The baseline's statistics of `split`; of its only split when it has one and not
    `split` (a run on other splits); None when it has neither."""
    names = artifact_utils.decode_split_names(artifact.split_names)
    if split not in names:
        if len(names) != 1:
            return None
        split = names[0]
    return stats_artifact_utils.load_statistics(artifact, split).proto()


def _training(artifact: types.Artifact) -> statistics_pb2.DatasetFeatureStatisticsList:
    names = artifact_utils.decode_split_names(artifact.split_names)
    split = _TRAINING_SPLIT if _TRAINING_SPLIT in names else names[0]
    return stats_artifact_utils.load_statistics(artifact, split).proto()


def _schema(input_dict) -> Optional[schema_pb2.Schema]:
    schema = input_dict.get(spec.SCHEMA_KEY)
    return io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
        artifact_utils.get_single_uri(schema))) if schema else None


def _single(artifacts_by_key, key) -> Optional[types.Artifact]:
    artifacts = artifacts_by_key.get(key)
    return artifacts[0] if artifacts else None
