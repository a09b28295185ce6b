"""Beam transforms of the engine: serialized examples in, per-model predictions out."""
from typing import Dict, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from inference.config import InferenceConfig
from inference.encoding import to_prediction_log
from inference.handler import ExampleModelHandler, create_handler

COUNTERS_NAMESPACE = "tfx_runinference"


def examples_counter(split: str) -> str:
    return f"examples_in[{split}]"


def predictions_counter(model_name: str) -> str:
    return f"predictions[{model_name}]"


def create_handlers(config: InferenceConfig, model_uris: Mapping[str, str],
                    schema=None) -> Dict[str, ExampleModelHandler]:
    """One ExampleModelHandler per configured model, frameworks detected, by model name.

    model_uris: model name -> path, for models whose configuration leaves `uri` empty.
    """
    config.validate()
    return {m.name: create_handler(m, model_uris.get(m.name) or m.uri, schema)
            for m in config.models}


class Count(beam.PTransform):
    """Passes elements through, counting them in a Beam counter."""

    def __init__(self, name: str, namespace: str = COUNTERS_NAMESPACE):
        super().__init__()
        self._name, self._namespace = name, namespace

    def expand(self, pcoll):
        counter = beam.metrics.Metrics.counter(self._namespace, self._name)

        def count(element):
            counter.inc()
            return element

        return pcoll | beam.Map(count)


class InferExamples(beam.PTransform):
    """PCollection[bytes] -> {model name: PCollection[PredictionResult]}.

    Every model sees every record (shadow routing); each result names its model.
    """

    def __init__(self, handlers: Mapping[str, ExampleModelHandler],
                 inference_args: Optional[dict] = None):
        super().__init__()
        self._handlers = handlers
        self._inference_args = inference_args

    def expand(self, records) -> Dict[str, beam.PCollection]:
        return {
            name: (records
                   | f"RunInference[{name}]" >> RunInference(
                       handler, inference_args=self._inference_args)
                   | f"Count[{name}]" >> Count(predictions_counter(name)))
            for name, handler in self._handlers.items()
        }


class EncodePredictionLogs(beam.PTransform):
    """PCollection[PredictionResult] -> PCollection[serialized PredictionLog]."""

    def __init__(self, output_names: Sequence[str] = ()):
        super().__init__()
        self._output_names = tuple(output_names)

    def expand(self, results):
        names = self._output_names
        return results | beam.Map(
            lambda result: to_prediction_log(result, names).SerializeToString())
