"""The engine's metrics, and the figures of a finished run read back from them.

Everything is counted in one namespace, by the engine itself, where it happens: records read
per split (`examples_in`), predictions when they are written (or handed to the next model
of a sequence), failures when they are dead-lettered (per model, split and stage; a
damaged file counts the records it is estimated to have lost), and per model the records of
each batch, batch latency, model loads and timeouts. The figures never depend on Beam's own
metric names.
"""
import dataclasses
import math
import time
from typing import Dict, Iterable, Optional

from apache_beam.metrics.metric import Metrics, MetricsFilter

from inference.config import ModelConfig

NAMESPACE = "tfx_runinference"
# Counters: "|"-separated names.
EXAMPLES_IN = "examples_in"  # |split
PREDICTIONS = "predictions"  # |model|split
FAILURES = "failures"  # |model|split|stage
DAMAGED_FILES = "damaged_files"  # |split: files read up to damage part-way
UNREADABLE_FILES = "unreadable_files"  # |split: files of which nothing could be read
UNREAD_BYTES = "unread_bytes"  # |split: the bytes of both past the damage
UNREADABLE_BYTES = "unreadable_bytes"  # |split: the bytes of files of which nothing was read
BYTES_READ = "bytes_read"  # |split: the bytes of the files read without damage
TIMEOUTS = "timeouts"  # |model: batches or records that ran over timeout_secs
MODEL_VERSIONS = "model_versions_loaded"  # |model: newer versions a worker swapped in
MODEL_VERSION_FAILURES = "model_version_failures"  # |model: versions that did not load
ROUTED = "routed"  # |split|key: records keyed routing sent to a key's model
# Distributions, per model.
BATCH_RECORDS = "batch_records"
BATCH_MS = "batch_ms"  # a batch's time in the handler, decoding to results
LOAD_MS = "load_ms"  # the model's files
TRANSFORM_LOAD_MS = "transform_load_ms"  # the tf.Transform graph its records go through
ACTIVE_MS = "active_ms"  # each batch's start and end, in ms since the handler was built
# Remote models (inference/remote), per model: requests sent (retries included), retries,
# requests given up after their last retry, seconds Beam's client-side throttling held
# requests back; each request's latency (a distribution, and counts per latency bucket,
# |model|bucket, for percentiles: 20 buckets per decade of ms, so within 12%).
# While a remote model's circuit was open (inference/remote/breaker.py): milliseconds
# (summed over worker processes), and the records it dead-lettered.
CIRCUIT_OPEN_MS = "circuit_open_ms"
CIRCUIT_OPEN_RECORDS = "circuit_open_records"
REMOTE_REQUESTS = "remote_requests"
REMOTE_RETRIES = "remote_retries"
REMOTE_FAILED = "remote_failed_requests"
THROTTLED_SECONDS = "throttled_seconds"
REQUEST_MS = "request_ms"
REQUEST_MS_BUCKET = "request_ms_bucket"
_BUCKETS_PER_DECADE = 20
# Beam's name for time held back by throttling, which Dataflow's autoscaling reads.
BEAM_THROTTLING_COUNTER = "cumulativeThrottlingSeconds"


def counter(*parts: str):
    return Metrics.counter(NAMESPACE, "|".join(parts))


def _distribution(*parts: str):
    return Metrics.distribution(NAMESPACE, "|".join(parts))


def record_batch(model: str, records: int, started: float, origin: float):
    """Counts a batch of `records` that began at `started` (time.time()) and ends now."""
    now = time.time()
    _distribution(BATCH_RECORDS, model).update(records)
    _distribution(BATCH_MS, model).update(int((now - started) * 1000))
    # Milliseconds since `origin`, not since the epoch: the distribution's sum stays far
    # from int64's limit however many batches a long streaming job counts.
    active = _distribution(ACTIVE_MS, model)
    active.update(int((started - origin) * 1000))
    active.update(int((now - origin) * 1000))


def record_load(model: str, seconds: float, transform_seconds: Optional[float] = None):
    """Counts one load of the model, and of its tf.Transform graph when it has one."""
    _distribution(LOAD_MS, model).update(int(seconds * 1000))
    if transform_seconds is not None:
        _distribution(TRANSFORM_LOAD_MS, model).update(int(transform_seconds * 1000))


def record_timeout(model: str):
    counter(TIMEOUTS, model).inc()


def record_requests(model: str, requests: int, retries: int, failed: int,
                    latencies_ms: Iterable[float], throttled_seconds: int):
    """Counts one batch's remote requests (in the thread running the DoFn: Beam's metrics
    do not count in the threads that send the requests)."""
    counter(REMOTE_REQUESTS, model).inc(requests)
    for name, value in ((REMOTE_RETRIES, retries), (REMOTE_FAILED, failed),
                        (THROTTLED_SECONDS, throttled_seconds)):
        if value:
            counter(name, model).inc(value)
    if throttled_seconds:
        Metrics.counter(f"RunInference[{model}]", BEAM_THROTTLING_COUNTER).inc(
            throttled_seconds)
    latency = _distribution(REQUEST_MS, model)
    buckets: Dict[int, int] = {}
    for ms in latencies_ms:
        latency.update(int(round(ms)))
        bucket = math.ceil(_BUCKETS_PER_DECADE * math.log10(max(ms, 0.01)))
        buckets[bucket] = buckets.get(bucket, 0) + 1
    for bucket, count in buckets.items():
        counter(REQUEST_MS_BUCKET, model, str(bucket)).inc(count)


def record_circuit(model: str, open_seconds: float, records: int):
    """Counts the time a remote model's circuit was open and the records it dead-lettered
    (in the thread running the DoFn, as `record_requests`)."""
    for name, value in ((CIRCUIT_OPEN_MS, int(round(open_seconds * 1000))),
                        (CIRCUIT_OPEN_RECORDS, records)):
        if value:
            counter(name, model).inc(value)


@dataclasses.dataclass
class ModelFigures:
    """What one model did in one run: examples_in (the records routed to it) =
    predictions + failures, per split too."""
    examples_in: int = 0
    predictions: int = 0
    failures: int = 0
    failures_by_stage: Dict[str, int] = dataclasses.field(default_factory=dict)
    by_split: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
    model_load_ms: float = 0.0
    model_loads: int = 0
    transform_load_ms: float = 0.0  # mean load of the tf.Transform graph; 0 without one
    mean_batch_size: float = 0.0
    batches: int = 0
    max_batch_size: int = 0
    mean_batch_ms: float = 0.0
    max_batch_ms: int = 0
    timeouts: int = 0
    examples_per_sec: float = 0.0  # predictions per second of the whole pipeline run
    # From the start of the model's first batch to the end of its last, over all workers:
    # the run without pipeline set-up and worker start-up.
    active_seconds: float = 0.0
    # A remote model's requests (see `_remote_figures`); empty for a local model.
    remote: Dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunFigures:
    models: Dict[str, ModelFigures]
    examples_in: Dict[str, int]  # per split
    read_failures: Dict[str, int]  # per split: records lost to damaged files (estimated)
    damaged_files: Dict[str, int]  # per split
    unreadable_files: Dict[str, int]  # per split
    unread_bytes: Dict[str, int]  # per split
    unreadable_bytes: Dict[str, int]  # per split
    bytes_read: Dict[str, int]  # per split
    routing_failures: Dict[str, int]  # per split: records no model could take
    seconds: float
    routed: Dict[str, int] = dataclasses.field(default_factory=dict)  # keyed: per key

    def unaccounted(self, routing: str) -> Dict[str, int]:
        """Per split, records read that were neither predicted nor failed (0 when all is
        well): every record reaches its models (by the routing) and ends once per model."""
        models = list(self.models.values())
        result = {}
        for split, examples_in in self.examples_in.items():
            routed = [m.by_split[split]["examples_in"] for m in models]
            if routing in ("ab", "keyed"):
                expected = [examples_in - self.routing_failures[split] - sum(routed)]
            elif routing == "sequence":
                fed = [examples_in] + [m.by_split[split]["predictions"] for m in models[:-1]]
                expected = [f - r for f, r in zip(fed, routed)]
            else:
                expected = [examples_in - self.routing_failures[split] - r for r in routed]
            result[split] = sum(abs(e) for e in expected)
        return result


def _committed(result):
    return result.committed if result.committed is not None else result.attempted


class _Query:
    """A finished pipeline's engine metrics, by the parts of their names."""

    def __init__(self, pipeline_result):
        metrics = pipeline_result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
        self.counters: Dict[tuple, int] = {}
        for result in metrics["counters"]:
            key = tuple(result.key.metric.name.split("|"))
            self.counters[key] = self.counters.get(key, 0) + (_committed(result) or 0)
        self.distributions: Dict[tuple, list] = {}
        for result in metrics["distributions"]:
            value = _committed(result)
            if value is None or not value.count:
                continue
            key = tuple(result.key.metric.name.split("|"))
            total = self.distributions.setdefault(key, [0, 0, None, None])
            total[0] += value.sum
            total[1] += value.count
            total[2] = value.min if total[2] is None else min(total[2], value.min)
            total[3] = value.max if total[3] is None else max(total[3], value.max)

    def count(self, *key: str) -> int:
        return self.counters.get(key, 0)

    def matching(self, *prefix: str) -> Dict[tuple, int]:
        return {k: v for k, v in self.counters.items() if k[:len(prefix)] == prefix}

    def distribution(self, *key: str) -> tuple:
        """(sum, count, min, max); min and max None when nothing was recorded."""
        return tuple(self.distributions.get(key, [0, 0, None, None]))


def run_figures(pipeline_result, models: Iterable[ModelConfig], splits: Iterable[str],
                seconds: float) -> RunFigures:
    """Figures per model and split."""
    query = _Query(pipeline_result)
    splits = list(splits)
    figures_by_model = {model.name: _model_figures(query, model.name, splits, seconds)
                        for model in models}

    def per_split(*parts: str, stage: Optional[str] = None):
        return {s: sum(v for k, v in query.matching(*parts).items()
                       if k[len(parts)] == s and (stage is None or k[-1] == stage))
                for s in splits}

    read = per_split(FAILURES, "", stage="read")
    unrouted = {s: per_split(FAILURES, "")[s] - read[s] for s in splits}
    def counts(name: str):
        return {s: query.count(name, s) for s in splits}

    routed: Dict[str, int] = {}
    for key, value in query.matching(ROUTED).items():
        routed[key[2]] = routed.get(key[2], 0) + value
    return RunFigures(figures_by_model, counts(EXAMPLES_IN), read, counts(DAMAGED_FILES),
                      counts(UNREADABLE_FILES), counts(UNREAD_BYTES),
                      counts(UNREADABLE_BYTES), counts(BYTES_READ),
                      unrouted, seconds, routed)


def _model_figures(query: _Query, name: str, splits, seconds: float) -> ModelFigures:
    figures = ModelFigures()
    failures = query.matching(FAILURES, name)
    for key, value in failures.items():
        figures.failures_by_stage[key[3]] = figures.failures_by_stage.get(key[3], 0) + value
    for split in splits:
        predicted = query.count(PREDICTIONS, name, split)
        failed = sum(v for k, v in failures.items() if k[2] == split)
        figures.by_split[split] = {"examples_in": predicted + failed,
                                   "predictions": predicted, "failures": failed}
        figures.predictions += predicted
        figures.failures += failed
    figures.examples_in = figures.predictions + figures.failures
    total, figures.batches, _, most = query.distribution(BATCH_RECORDS, name)
    figures.mean_batch_size = total / figures.batches if figures.batches else 0.0
    figures.max_batch_size = most or 0
    total, count, _, most = query.distribution(BATCH_MS, name)
    figures.mean_batch_ms = total / count if count else 0.0
    figures.max_batch_ms = most or 0
    total, figures.model_loads, _, _ = query.distribution(LOAD_MS, name)
    figures.model_load_ms = total / figures.model_loads if figures.model_loads else 0.0
    total, count, _, _ = query.distribution(TRANSFORM_LOAD_MS, name)
    figures.transform_load_ms = total / count if count else 0.0
    _, _, first, last = query.distribution(ACTIVE_MS, name)
    figures.active_seconds = (last - first) / 1000 if first is not None else 0.0
    figures.timeouts = query.count(TIMEOUTS, name)
    figures.examples_per_sec = figures.predictions / seconds if seconds > 0 else 0.0
    figures.remote = _remote_figures(query, name)
    return figures


def _remote_figures(query: _Query, name: str) -> Dict[str, float]:
    """A remote model's request figures; empty for a model that sent no requests."""
    requests = query.count(REMOTE_REQUESTS, name)
    while_open = query.count(CIRCUIT_OPEN_RECORDS, name)
    if not requests and not while_open:
        return {}
    buckets = {int(key[2]): value
               for key, value in query.matching(REQUEST_MS_BUCKET, name).items()}
    total, count, least, most = query.distribution(REQUEST_MS, name)
    return {"requests": requests, "retries": query.count(REMOTE_RETRIES, name),
            "failed_requests": query.count(REMOTE_FAILED, name),
            "throttled_seconds": query.count(THROTTLED_SECONDS, name),
            "circuit_open_seconds": query.count(CIRCUIT_OPEN_MS, name) / 1000,
            "circuit_open_records": while_open,
            "request_ms_mean": round(total / count, 1) if count else 0.0,
            "request_ms_min": float(least or 0), "request_ms_max": float(most or 0),
            "request_ms_p50": _percentile_ms(buckets, 0.5),
            "request_ms_p99": _percentile_ms(buckets, 0.99)}


def _percentile_ms(buckets: Dict[int, int], fraction: float) -> float:
    """The latency below which `fraction` of the requests fell: its bucket's upper bound."""
    total, seen = sum(buckets.values()), 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= fraction * total:
            return round(10 ** (bucket / _BUCKETS_PER_DECADE), 1)
    return 0.0
