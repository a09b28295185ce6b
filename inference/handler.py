"""`ExampleModelHandler`: any framework's Beam handler, fed batches of serialized tf.Examples.

It is a Beam `ModelHandler[bytes, PredictionResult, model]` and composes like one
(`KeyedModelHandler`, `with_preprocess_fn`, `RunInference(...).with_exception_handling()`).
It owns the Beam-level controls (batch sizes, `large_model`, `model_copies`) and delegates
loading and the forward pass to the framework's own Beam handler. Each batch is decoded
once, so no per-record parsing happens in Python.
"""
import dataclasses
from typing import Any, Dict, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from inference import decoding, detection, frameworks
from inference.config import ConfigError, ModelConfig
from inference.frameworks import FrameworkHandler


class ExampleModelHandler(ModelHandler[bytes, PredictionResult, Any]):
    """Runs one model on serialized tf.Examples; each result keeps its record and model name.

    Results are `PredictionResult(example=<serialized record>, inference=<the framework's
    output for that record>, model_id=<model name>)`.
    """

    def __init__(self, model: ModelConfig, framework: FrameworkHandler,
                 decoder: Optional[decoding.ExampleDecoder] = None):
        super().__init__(**model.batching_kwargs())
        self._model = model
        self._inner = framework.handler
        self._to_examples = framework.to_examples
        self._decoder = decoder
        self._mapping = decoding.InputMapping(model.inputs)

    @property
    def model_name(self) -> str:
        return self._model.name

    @property
    def output_names(self):
        return tuple(self._model.output_names)

    @property
    def decodes(self) -> bool:
        """False when the framework takes serialized records as they are."""
        return self._to_examples is not None

    def load_model(self) -> Any:
        return self._inner.load_model()

    def model_inputs(self, records: Sequence[bytes]) -> Any:
        """The batch's inputs as the framework's handler takes them."""
        if not self.decodes:
            return list(records)
        return self._to_examples(self._mapping(self._decoder(records)))

    def run_inference(self, batch: Sequence[bytes], model: Any,
                      inference_args: Optional[Dict[str, Any]] = None):
        results = self._inner.run_inference(self.model_inputs(batch), model, inference_args)
        results = list(results)
        if len(results) != len(batch):
            raise RuntimeError(f"model {self.model_name!r} returned {len(results)} results "
                               f"for a batch of {len(batch)} records")
        return [PredictionResult(record, _inference(result), self.model_name)
                for record, result in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(record) for record in batch)

    def get_metrics_namespace(self) -> str:
        return f"RunInference[{self.model_name}]"

    def validate_inference_args(self, inference_args):
        self._inner.validate_inference_args(inference_args)

    def update_model_path(self, model_path: Optional[str] = None):
        self._inner.update_model_path(model_path)

    def should_garbage_collect_on_timeout(self) -> bool:
        return self._inner.should_garbage_collect_on_timeout()

    def set_environment_vars(self):
        self._inner.set_environment_vars()


def _inference(result: Any) -> Any:
    # Beam's handlers return PredictionResults; tfx_bsl's return PredictionLogs as they are.
    return result.inference if isinstance(result, PredictionResult) else result


def create_handler(model: ModelConfig, uri: Optional[str] = None,
                   schema=None) -> ExampleModelHandler:
    """The handler for `model`, with its framework detected from `uri` when not set.

    schema: the examples' tensorflow_metadata Schema, when known; decoding then follows it
      (and skips features no model reads). Without one, types come from the data.
    """
    framework, path = detection.resolve(uri or model.uri, model.framework)
    model = dataclasses.replace(model, framework=framework, uri=path)
    built = frameworks.build(model, path)
    if built.to_examples is not None and not model.inputs.features:
        raise ConfigError(f"model {model.name!r} ({framework}) needs inputs.features: the "
                          f"features it takes, in order")
    decoder = (decoding.ExampleDecoder(schema, model.inputs.features)
               if built.to_examples is not None else None)
    return ExampleModelHandler(model, built, decoder)
