"""The engine's metrics, and per-model figures from a finished Beam pipeline's metrics.

RunInference reports, per model handler namespace, `load_model_latency_milli_secs`; the
engine's own metrics (named here) count examples in per split, predictions per model and
split, failures per model, split and stage, and the records in each model's batches.
"""
import dataclasses
import time
from typing import Dict, Iterable

from apache_beam.metrics.metric import Metrics, MetricsFilter

from inference.config import ModelConfig

COUNTERS_NAMESPACE = "tfx_runinference"


def examples_counter(split: str) -> str:
    return f"examples_in|{split}"


def predictions_counter(model_name: str, split: str) -> str:
    return f"predictions|{model_name}|{split}"


def failures_counter(model_name: str, split: str, stage: str) -> str:
    return f"failures|{model_name}|{split}|{stage}"


def batch_records_distribution(model_name: str) -> str:
    return f"batch_records|{model_name}"


def active_ms_distribution(model_name: str) -> str:
    """Each batch's start and end, in ms since the model's handler was built: its min and
    max bound the time the model was inferring, across workers."""
    return f"active_ms|{model_name}"


def record_batch(model_name: str, records: int, started: float, origin: float):
    """Counts a batch of `records` that began at `started` (time.time()) and ends now."""
    Metrics.distribution(COUNTERS_NAMESPACE,
                         batch_records_distribution(model_name)).update(records)
    # Milliseconds since `origin`, not since the epoch: the distribution's sum stays far
    # from int64's limit however many batches a long streaming job counts.
    active = Metrics.distribution(COUNTERS_NAMESPACE, active_ms_distribution(model_name))
    active.update(int((started - origin) * 1000))
    active.update(int((time.time() - origin) * 1000))


KEYED_NAMESPACE = "BeamML_KeyedModels"  # Beam's KeyedModelHandler metrics namespace


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
    mean_batch_size: float = 0.0
    batches: int = 0
    examples_per_sec: float = 0.0  # predictions per second of the whole pipeline run
    # From the start of the model's first batch to the end of its last, over all workers:
    # the run without pipeline set-up and worker start-up.
    active_seconds: float = 0.0


@dataclasses.dataclass
class RunFigures:
    models: Dict[str, ModelFigures]
    examples_in: Dict[str, int]  # per split
    read_failures: Dict[str, int]  # per split: damaged files
    routing_failures: Dict[str, int]  # per split: records no model could take
    seconds: float

    def unaccounted(self, routing: str) -> Dict[str, int]:
        """Per split, input records neither predicted nor failed (0 when all is well)."""
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
                expected = [examples_in - r for r in routed]
            result[split] = sum(abs(e) for e in expected)
        return result


def _committed(result):
    return result.committed if result.committed is not None else result.attempted


def _engine_counters(metrics) -> Dict[tuple, int]:
    """Our counters, keyed by the parts of their '|'-separated names."""
    totals: Dict[tuple, int] = {}
    for result in metrics["counters"]:
        if result.key.metric.namespace != COUNTERS_NAMESPACE:
            continue
        key = tuple(result.key.metric.name.split("|"))
        totals[key] = totals.get(key, 0) + (_committed(result) or 0)
    return totals


def _distribution(metrics, model: ModelConfig, name: str) -> tuple:
    """(sum, count, min, max) of one of RunInference's distributions for `model`, or of
    ours.

    A model's own RunInference reports under its handler's namespace; Beam's
    KeyedModelHandler reports under its own, each name prefixed by the model's first key.
    """
    wanted = {(f"RunInference[{model.name}]", name), (COUNTERS_NAMESPACE, name)}
    if model.keys:
        wanted.add((KEYED_NAMESPACE, f"{model.keys[0]}-_{name}"))
    total = count = 0
    least = most = None
    for result in metrics["distributions"]:
        value = _committed(result)
        if value is not None and value.count and (result.key.metric.namespace,
                                                  result.key.metric.name) in wanted:
            total, count = total + value.sum, count + value.count
            least = value.min if least is None else min(least, value.min)
            most = value.max if most is None else max(most, value.max)
    return total, count, least, most


def run_figures(pipeline_result, models: Iterable[ModelConfig], splits: Iterable[str],
                seconds: float) -> RunFigures:
    """Figures per model and split."""
    metrics = pipeline_result.metrics().query(MetricsFilter())
    counters = _engine_counters(metrics)
    splits = list(splits)
    examples_in = {s: counters.get(("examples_in", s), 0) for s in splits}
    figures_by_model = {}
    for model in models:
        name = model.name
        figures = ModelFigures()
        for key, value in counters.items():
            if key[0] == "failures" and key[1] == name:
                figures.failures_by_stage[key[3]] = (
                    figures.failures_by_stage.get(key[3], 0) + value)
        for split in splits:
            predicted = counters.get(("predictions", name, split), 0)
            failed = sum(v for k, v in counters.items()
                         if k[0] == "failures" and k[1] == name and k[2] == split)
            figures.by_split[split] = {"examples_in": predicted + failed,
                                       "predictions": predicted, "failures": failed}
            figures.predictions += predicted
            figures.failures += failed
        figures.examples_in = figures.predictions + figures.failures
        batch_total, figures.batches, _, _ = _distribution(
            metrics, model, batch_records_distribution(name))
        load_total, figures.model_loads, _, _ = _distribution(
            metrics, model, "load_model_latency_milli_secs")
        _, _, first, last = _distribution(metrics, model, active_ms_distribution(name))
        figures.active_seconds = (last - first) / 1000 if first is not None else 0.0
        figures.mean_batch_size = batch_total / figures.batches if figures.batches else 0.0
        figures.model_load_ms = load_total / figures.model_loads if figures.model_loads else 0.0
        figures.examples_per_sec = figures.predictions / seconds if seconds > 0 else 0.0
        figures_by_model[name] = figures
    read_failures = {s: counters.get(("failures", "", s, "read"), 0) for s in splits}
    routing_failures = {s: sum(v for k, v in counters.items() if k[0] == "failures"
                               and k[1] == "" and k[2] == s and k[3] != "read")
                        for s in splits}
    return RunFigures(figures_by_model, examples_in, read_failures, routing_failures, seconds)
