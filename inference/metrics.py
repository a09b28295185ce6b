"""Per-model figures from a finished Beam pipeline's metrics.

RunInference reports, per model handler namespace, `num_inferences`,
`inference_request_batch_size`, `load_model_latency_milli_secs`, `failed_batches_counter`;
the engine's own counters (see `transforms`) count examples in and predictions out.
"""
import dataclasses
from typing import Dict, Iterable

from apache_beam.metrics.metric import MetricsFilter

from inference.transforms import COUNTERS_NAMESPACE, examples_counter, predictions_counter


@dataclasses.dataclass
class ModelFigures:
    """What one model did in one run."""
    examples_in: int = 0
    predictions: int = 0
    failures: int = 0
    model_load_ms: float = 0.0
    mean_batch_size: float = 0.0
    batches: int = 0
    examples_per_sec: float = 0.0


def _committed(result):
    return result.committed if result.committed is not None else result.attempted


def _counter_totals(metrics) -> Dict[tuple, int]:
    totals: Dict[tuple, int] = {}
    for result in metrics["counters"]:
        key = (result.key.metric.namespace, result.key.metric.name)
        totals[key] = totals.get(key, 0) + (_committed(result) or 0)
    return totals


def _distributions(metrics) -> Dict[tuple, tuple]:
    """(namespace, name) -> (sum, count) over all steps."""
    totals: Dict[tuple, tuple] = {}
    for result in metrics["distributions"]:
        value = _committed(result)
        if value is None:
            continue
        key = (result.key.metric.namespace, result.key.metric.name)
        total, count = totals.get(key, (0, 0))
        totals[key] = (total + value.sum, count + value.count)
    return totals


def model_figures(pipeline_result, model_names: Iterable[str], splits: Iterable[str],
                  seconds: float) -> Dict[str, ModelFigures]:
    """Figures per model name. Every model saw every split's examples."""
    metrics = pipeline_result.metrics().query(MetricsFilter())
    counters = _counter_totals(metrics)
    distributions = _distributions(metrics)
    examples_in = sum(counters.get((COUNTERS_NAMESPACE, examples_counter(s)), 0)
                      for s in splits)
    figures = {}
    for name in model_names:
        namespace = f"RunInference[{name}]"
        batch_total, batches = distributions.get(
            (namespace, "inference_request_batch_size"), (0, 0))
        load_total, loads = distributions.get(
            (namespace, "load_model_latency_milli_secs"), (0, 0))
        predictions = counters.get((COUNTERS_NAMESPACE, predictions_counter(name)), 0)
        figures[name] = ModelFigures(
            examples_in=examples_in,
            predictions=predictions,
            failures=examples_in - predictions,
            model_load_ms=load_total / loads if loads else 0.0,
            mean_batch_size=batch_total / batches if batches else 0.0,
            batches=batches,
            examples_per_sec=predictions / seconds if seconds > 0 else 0.0)
    return figures
