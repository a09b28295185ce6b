"""Drift of a run's predictions (and skew of its inputs) against a baseline, from the run's
bounded sample (`inference.io.sampling`): nothing is read back from the run's outputs, and
nothing is added to the per-record path.

Per model and output, the sample becomes a TFDV feature `<model>.<output>`, described by
TFDV's statistics and compared by TFDV's drift comparators (`tfdv.validate_statistics` with
`previous_statistics`): values (one float per record) by the Jensen-Shannon divergence of
their histograms, classes (text, integers) by the L-infinity distance of their frequencies.
A few scores per record (a classifier's probabilities or logits) are two features: the
argmax, a class, and `<model>.<output>.max`, the top score, a value. An embedding
(`EMBEDDING_MIN_WIDTH` floats or more per record) is described by its norms (a feature
`<model>.<output>.norm`, compared as scores) and a summary kept in that feature's custom
statistics: the sample's centroid, its spread and a 2-D PCA projection. TFDV has no
distance between sets of vectors; its per-feature comparators would see 384 unrelated
columns. The embedding's drift is the distance between the run's and the baseline's
centroids in units of the baseline's spread (root mean squared distance of its vectors to
their centroid): scale free (any model's embedding space), over every dimension rather than
the two drawn, 0 for the same sample, and about sqrt(2 / n) between two samples of n
records of the same distribution (0.03 for 2,000), so a threshold of 0.25 is well above
sampling noise.
"""
import dataclasses
import json
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx_bsl.coders import example_coder

EMBEDDING_MIN_WIDTH = 32  # floats per record from which an output is an embedding
NORM = ".norm"  # suffix of an embedding's norm feature
TOP = ".max"  # suffix of the top score's feature
_HISTOGRAM_BUCKETS = 20
_PROJECTED = 500  # projected sample points kept in the statistics, per embedding
JENSEN_SHANNON, L_INFINITY, CENTROID_SHIFT = (
    "Jensen-Shannon divergence", "L-infinity distance", "centroid shift / spread")
ACTIONS = ("warn", "fail")


class DriftError(RuntimeError):
    """A run whose predictions drifted beyond a threshold, with action "fail"."""


@dataclasses.dataclass
class DriftConfig:
    """How a run is compared with its baseline, and what a drift does.

    action: "warn" logs and reports it; "fail" fails the run after its outputs are written.
    jensen_shannon: threshold of scores (one float per record) and of embeddings' norms.
    infinity_norm: threshold of classes, and of input features that are categorical.
    centroid_shift: threshold of embeddings (see the module's docstring).
    thresholds: per `<model>.<output>` (an embedding's centroid shift; its norms are
      `<model>.<output>.norm`) or input feature name (skew), overriding the default of
      its kind.
    """
    action: str = "warn"
    jensen_shannon: float = 0.1
    infinity_norm: float = 0.1
    centroid_shift: float = 0.25
    thresholds: Dict[str, float] = dataclasses.field(default_factory=dict)

    def validate(self) -> "DriftConfig":
        if self.action not in ACTIONS:
            raise ValueError(f"drift_config.action={self.action!r}: one of {ACTIONS}")
        for name, value in {"jensen_shannon": self.jensen_shannon,
                            "infinity_norm": self.infinity_norm,
                            "centroid_shift": self.centroid_shift, **self.thresholds}.items():
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"drift_config threshold {name}={value!r}: a number >= 0")
        return self

    def threshold(self, feature: str, measure: str) -> float:
        if feature in self.thresholds:
            return float(self.thresholds[feature])
        return {JENSEN_SHANNON: self.jensen_shannon, L_INFINITY: self.infinity_norm,
                CENTROID_SHIFT: self.centroid_shift}[measure]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DriftConfig":
        values = json.loads(text)
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"drift_config: unknown field(s) {sorted(unknown)}")
        return cls(**values).validate()


class Row(NamedTuple):
    """One sampled record: its input's hash, split, and outputs (1-D arrays) by name."""
    hash: int
    split: str
    outputs: Mapping[str, np.ndarray]


@dataclasses.dataclass
class Embedding:
    """An embedding's summary: centroid, spread, the PCA basis (2 x width) and the sample
    projected on it (points x 2)."""
    centroid: np.ndarray
    spread: float
    basis: np.ndarray
    points: np.ndarray

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return (vectors - self.centroid) @ self.basis.T


@dataclasses.dataclass
class Measurement:
    """One output's (or input feature's) comparison with the baseline."""
    feature: str
    measure: str
    value: Optional[float]  # None: nothing to compare it with
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.value is not None and self.value > self.threshold


def kind(values: Sequence[np.ndarray]) -> str:
    """What an output is, from its sampled values (one 1-D array per record): "classes"
    (text, integers), "values" (one float per record), "scores" (a few floats),
    "embedding", or "ragged" (floats of varying widths: not compared)."""
    first = np.asarray(values[0])
    if first.dtype.kind in "OSUbiu":
        return "classes"
    widths = {len(v) for v in values}
    if len(widths) > 1:
        return "ragged"
    width = widths.pop()
    return "values" if width == 1 else (
        "embedding" if width >= EMBEDDING_MIN_WIDTH else "scores")


def classes(values: Sequence[np.ndarray]) -> List[str]:
    """One class per record: the first value as text, or the argmax of float scores."""
    if np.asarray(values[0]).dtype.kind == "f":
        return [str(int(np.argmax(v))) for v in values]
    return [v[0].decode(errors="replace") if isinstance(v[0], bytes) else str(v[0])
            for v in values]


def summarize(vectors: np.ndarray) -> Embedding:
    """An embedding sample's centroid, spread and 2-D PCA (SVD of the centred sample)."""
    vectors = vectors.astype(np.float64)
    centroid = vectors.mean(axis=0)
    centred = vectors - centroid
    spread = float(np.sqrt((centred ** 2).sum(axis=1).mean()))
    basis = np.linalg.svd(centred, full_matrices=False)[2][:2] if len(vectors) > 1 else (
        np.eye(2, vectors.shape[1]))
    if basis.shape[0] < 2:
        basis = np.vstack([basis, np.zeros_like(basis)])
    return Embedding(centroid, spread, basis, centred[:_PROJECTED] @ basis.T)


def centroid_shift(current: np.ndarray, baseline: Embedding) -> float:
    """The distance between the sample's centroid and the baseline's, over its spread."""
    shift = float(np.linalg.norm(current.astype(np.float64).mean(axis=0) - baseline.centroid))
    return shift / baseline.spread if baseline.spread else (0.0 if not shift else np.inf)


def statistics(rows: Mapping[str, Sequence[Row]]
               ) -> Dict[str, statistics_pb2.DatasetFeatureStatisticsList]:
    """Per split, TFDV's statistics of every model's outputs (`rows`: model -> its sampled
    records): one feature per model and output; an embedding's summary in its norm
    feature's custom statistics."""
    result = {}
    for split in sorted({r.split for records in rows.values() for r in records}):
        table: Dict[int, Dict[str, object]] = {}
        for feature, (what, having, values) in _outputs(rows, split).items():
            if what == "classes":
                columns = {feature: classes(values)}
            elif what == "values":
                columns = {feature: [float(v[0]) for v in values]}
            elif what == "scores":
                columns = {feature: classes(values),
                           feature + TOP: [float(np.max(v)) for v in values]}
            else:  # to 5 digits: a normalised embedding's norms are 1, not float noise
                norms = np.linalg.norm(np.stack(values).astype(np.float64), axis=1)
                columns = {feature + NORM: [float(f"{n:.5g}") for n in norms]}
            for name, column in columns.items():
                for r, value in zip(having, column):
                    table.setdefault(r.hash, {})[name] = value
        frame = pd.DataFrame.from_dict(table, orient="index").reset_index(drop=True)
        stats = tfdv.generate_statistics_from_dataframe(
            frame, tfdv.StatsOptions(num_histogram_buckets=_HISTOGRAM_BUCKETS))
        for feature, matrix in embeddings(rows, split).items():
            _keep(_feature(stats, feature + NORM), summarize(matrix))
        result[split] = stats
    return result


def embeddings(rows: Mapping[str, Sequence[Row]], split: str) -> Dict[str, np.ndarray]:
    """The sampled embeddings of `split` (records x width) by `<model>.<output>`."""
    return {feature: np.stack(values).astype(np.float64)
            for feature, (what, _, values) in _outputs(rows, split).items()
            if what == "embedding"}


def _outputs(rows: Mapping[str, Sequence[Row]], split: str):
    """`<model>.<output>` -> (kind, the records holding it, their values), ragged left out."""
    found = {}
    for model, records in rows.items():
        mine = [r for r in records if r.split == split]
        for output in sorted({name for r in mine for name in r.outputs}):
            having = [r for r in mine if output in r.outputs]
            values = [np.asarray(r.outputs[output]).reshape(-1) for r in having]
            what = kind(values)
            if what != "ragged":
                found[f"{model}.{output}"] = (what, having, values)
    return found


def input_statistics(records: Sequence[bytes], schema: Optional[schema_pb2.Schema] = None
                     ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV's statistics of sampled input records (serialized tf.Examples), decoded by
    tfx_bsl as TFDV decodes examples. TFDV's in-memory entry point takes the decoded batch
    directly; its public ones want a DataFrame of scalars or a Beam pipeline over files."""
    decoder = example_coder.ExamplesToRecordBatchDecoder(
        schema.SerializeToString() if schema is not None else None)
    return stats_impl.generate_statistics_in_memory(
        decoder.DecodeBatch(list(records)),
        tfdv.StatsOptions(num_histogram_buckets=_HISTOGRAM_BUCKETS))


def embedding(feature_stats: Optional[statistics_pb2.FeatureNameStatistics]
              ) -> Optional[Embedding]:
    """The embedding summary kept in a norm feature's custom statistics, if any."""
    if feature_stats is None:
        return None
    custom = {c.name: c for c in feature_stats.custom_stats}
    if "centroid" not in custom:
        return None
    return Embedding(_tensor(custom["centroid"]), custom["spread"].num,
                     _tensor(custom["basis"]), _tensor(custom["points"]))


def compare(current: statistics_pb2.DatasetFeatureStatisticsList,
            baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList],
            config: DriftConfig, vectors: Optional[Mapping[str, np.ndarray]] = None
            ) -> Tuple[anomalies_pb2.Anomalies, List[Measurement]]:
    """This run's statistics (one split's) against the baseline's: TFDV's anomalies, with
    an anomaly per output above its threshold, and every output's measurement (value None
    where the baseline lacks the output, or when there is no baseline).

    vectors: the run's sampled embeddings by feature (`<model>.<output>`), compared with
      the baseline's summaries by centroid shift.
    """
    schema = tfdv.infer_schema(current)
    previous = {f.path.step[0]: f for f in baseline.datasets[0].features} if (
        baseline and baseline.datasets) else {}
    measurements = []
    for feature in schema.feature:
        if feature.name not in previous:
            continue
        measure = L_INFINITY if feature.type == schema_pb2.BYTES else JENSEN_SHANNON
        threshold = config.threshold(feature.name, measure)
        if measure == L_INFINITY:
            feature.drift_comparator.infinity_norm.threshold = threshold
        else:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=baseline) if (
        baseline and baseline.datasets) else tfdv.validate_statistics(current, schema)
    measured = {info.path.step[0]: info.drift_measurements[0].value
                for info in anomalies.drift_skew_info if info.drift_measurements}
    for feature in schema.feature:
        measure = L_INFINITY if feature.type == schema_pb2.BYTES else JENSEN_SHANNON
        measurements.append(Measurement(feature.name, measure, measured.get(feature.name),
                                        config.threshold(feature.name, measure)))
        if feature.name.endswith(NORM):  # an embedding: its centroid against the baseline's
            name = feature.name[:-len(NORM)]
            before = embedding(previous.get(feature.name))
            value = None if before is None or name not in (vectors or {}) else (
                centroid_shift(vectors[name], before))
            measurement = Measurement(name, CENTROID_SHIFT, value,
                                      config.threshold(name, CENTROID_SHIFT))
            measurements.append(measurement)
            if measurement.drifted:
                _add_anomaly(anomalies, name, f"The centroid of {name} moved {value:.4g} "
                             f"times the baseline's spread, above the threshold "
                             f"{measurement.threshold}.")
    return anomalies, measurements


def skew(training: statistics_pb2.DatasetFeatureStatisticsList,
         serving: statistics_pb2.DatasetFeatureStatisticsList,
         schema: schema_pb2.Schema, config: DriftConfig
         ) -> Tuple[anomalies_pb2.Anomalies, List[Measurement]]:
    """Input features of this run (`serving`, from its sampled records) against the
    training data's statistics: TFDV's skew comparators, the schema's own where it sets
    them, else the config's thresholds (L-infinity for categorical features, Jensen-Shannon
    for numeric ones). Schema anomalies other than skew are left to ExampleValidator."""
    schema = _copy(schema)
    served = {f.path.step[0] if f.path.step else f.name for f in serving.datasets[0].features}
    kept = [f for f in schema.feature if f.name in served]
    del schema.feature[:]
    for feature in kept:
        categorical = feature.type == schema_pb2.BYTES or feature.HasField("int_domain") and (
            feature.int_domain.is_categorical)
        measure = L_INFINITY if categorical else JENSEN_SHANNON
        comparator = feature.skew_comparator
        if not (comparator.HasField("infinity_norm")
                or comparator.HasField("jensen_shannon_divergence")):
            threshold = config.threshold(feature.name, measure)
            if categorical:
                comparator.infinity_norm.threshold = threshold
            else:
                comparator.jensen_shannon_divergence.threshold = threshold
        _loosen(feature)
        schema.feature.append(feature)
    anomalies = tfdv.validate_statistics(training, schema, serving_statistics=serving)
    measured = {info.path.step[0]: (info.skew_measurements[0].value,
                                    info.skew_measurements[0].threshold)
                for info in anomalies.drift_skew_info if info.skew_measurements}
    for name in list(anomalies.anomaly_info):
        if not any(reason.type in _SKEW for reason in anomalies.anomaly_info[name].reason):
            del anomalies.anomaly_info[name]
    measurements = []
    for feature in schema.feature:
        comparator = feature.skew_comparator
        measure = L_INFINITY if comparator.HasField("infinity_norm") else JENSEN_SHANNON
        value, threshold = measured.get(feature.name, (None, (
            comparator.infinity_norm.threshold if measure == L_INFINITY
            else comparator.jensen_shannon_divergence.threshold)))
        measurements.append(Measurement(feature.name, measure, value, threshold))
    return anomalies, measurements


_SKEW = (anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
         anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH)


def _loosen(feature: schema_pb2.Feature):
    """Drops what a schema checks beyond skew (presence, domains), for a skew check only."""
    for field in ("presence", "domain", "string_domain", "int_domain", "float_domain",
                  "value_count", "shape", "distribution_constraints"):
        if feature.HasField(field):
            feature.ClearField(field)


def _copy(message):
    copied = type(message)()
    copied.CopyFrom(message)
    return copied


def _feature(stats, name) -> statistics_pb2.FeatureNameStatistics:
    return next(f for f in stats.datasets[0].features if f.path.step[0] == name)


def _keep(feature_stats: statistics_pb2.FeatureNameStatistics, summary: Embedding):
    for name, value in (("centroid", summary.centroid), ("basis", summary.basis),
                        ("points", summary.points.astype(np.float32))):  # points: drawn only
        custom = feature_stats.custom_stats.add(name=name)
        custom.any.Pack(tf.make_tensor_proto(value))
    feature_stats.custom_stats.add(name="spread", num=summary.spread)


def _tensor(custom) -> np.ndarray:
    proto = tf.make_tensor_proto(np.zeros(0, np.float32))
    custom.any.Unpack(proto)
    return tf.make_ndarray(proto).astype(np.float64)


def _add_anomaly(anomalies: anomalies_pb2.Anomalies, feature: str, description: str):
    info = anomalies.anomaly_info[f"'{feature}'"]
    info.path.step.append(feature)
    info.severity = anomalies_pb2.AnomalyInfo.ERROR
    info.short_description = "High embedding centroid shift"
    info.description = description
    info.reason.add(type=anomalies_pb2.AnomalyInfo.CUSTOM_VALIDATION,
                    short_description=info.short_description, description=description)
