"""The run's figures come from the engine's own counters, and the accounting says when a
record went missing, for every routing."""
import apache_beam as beam

from inference.config import ModelConfig
from inference.observe import metrics


def _figures(by_split_a, by_split_b=None, examples_in=10, routing_failures=0):
    models = {"a": metrics.ModelFigures(by_split={"s": by_split_a})}
    if by_split_b is not None:
        models["b"] = metrics.ModelFigures(by_split={"s": by_split_b})
    return metrics.RunFigures(models, {"s": examples_in}, {"s": 0}, {"s": 0}, {"s": 0},
                              {"s": 0}, {"s": 0}, {"s": 0}, {"s": routing_failures}, 1.0)


def _split(examples_in, predictions):
    return {"examples_in": examples_in, "predictions": predictions,
            "failures": examples_in - predictions}


def test_accounting_per_routing():
    assert _figures(_split(10, 9), _split(10, 10)).unaccounted("shadow") == {"s": 0}
    assert _figures(_split(10, 9), _split(9, 9)).unaccounted("shadow") == {"s": 1}
    assert _figures(_split(4, 4), _split(5, 5), routing_failures=1).unaccounted(
        "keyed") == {"s": 0}
    assert _figures(_split(4, 4), _split(5, 5)).unaccounted("ab") == {"s": 1}
    # sequence: the second model is fed what the first predicted
    assert _figures(_split(10, 8), _split(8, 8)).unaccounted("sequence") == {"s": 0}
    assert _figures(_split(10, 8), _split(10, 10)).unaccounted("sequence") == {"s": 2}


class _Count(beam.DoFn):
    def process(self, element):
        metrics.counter(metrics.EXAMPLES_IN, "s").inc(element)
        metrics.counter(metrics.PREDICTIONS, "a", "s").inc(element - 1)
        metrics.counter(metrics.FAILURES, "a", "s", "decode").inc()
        metrics.counter(metrics.FAILURES, "", "s", "read").inc(7)
        metrics.record_batch("a", element, 0.0, 0.0)
        metrics.record_load("a", 0.25, element / 4)
        yield element


def test_figures_read_back_from_a_finished_pipeline():
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create([4, 6]) | beam.ParDo(_Count())
    figures = metrics.run_figures(pipeline.result, [ModelConfig(name="a")], ["s"], 2.0)
    model = figures.models["a"]
    assert figures.examples_in == {"s": 10} and figures.read_failures == {"s": 14}
    assert (model.predictions, model.failures, model.examples_in) == (8, 2, 10)
    assert model.failures_by_stage == {"decode": 2}
    assert (model.batches, model.mean_batch_size, model.max_batch_size) == (2, 5.0, 6)
    assert model.model_loads == 2 and model.model_load_ms == 250
    assert model.transform_load_ms == 1250  # the mean of 1 s and 1.5 s
    assert model.examples_per_sec == 4.0
