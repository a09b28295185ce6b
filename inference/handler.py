"""`ExampleModelHandler`: any framework's Beam handler, fed batches of serialized tf.Examples.

It is a Beam `ModelHandler[bytes, PredictionResult, model]` and composes like one
(`KeyedModelHandler`, `with_preprocess_fn`, `RunInference(...).with_exception_handling()`).
It owns the Beam-level controls (batch sizes, `large_model`, `model_copies`) and delegates
loading and the forward pass to the framework's own Beam handler. Each batch is decoded
once, so no per-record parsing happens in Python.
"""
import copy
import dataclasses
import logging
from typing import Any, Dict, List, Optional, Sequence

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from inference import decoding, detection, frameworks, routing
from inference.config import ConfigError, ModelConfig
from inference.failures import Failure
from inference.frameworks import FrameworkHandler


class ExampleModelHandler(ModelHandler[bytes, PredictionResult, Any]):
    """Runs one model on serialized tf.Examples; each result keeps its record and model name.

    Results are `PredictionResult(example=<serialized record>, inference=<the framework's
    output for that record>, model_id=<model name>)`.
    """

    def __init__(self, model: ModelConfig, framework: FrameworkHandler,
                 decoder: Optional[decoding.ExampleDecoder] = None):
        batching = model.batching_kwargs()
        if model.length_feature:
            batching.update(batch_length_fn=routing.FeatureLength(model.length_feature),
                            batch_bucket_boundaries=model.length_buckets or None)
        super().__init__(**batching)
        self._model = model
        self._inner = framework.handler
        self._to_examples = framework.to_examples
        self._decoder = decoder
        self._mapping = decoding.InputMapping(model.inputs)
        self._preprocess = (frameworks.import_object(model.preprocess_fn)
                            if model.preprocess_fn else None)
        self._postprocess = (frameworks.import_object(model.postprocess_fn)
                             if model.postprocess_fn else None)

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
        try:
            return self._inner.load_model()
        except Exception as e:
            raise RuntimeError(
                f"model {self.model_name!r} ({self._model.framework}) could not be loaded "
                f"from {self._model.uri}: {type(e).__name__}: {e}") from e

    def model_inputs(self, records: Sequence[bytes]) -> Any:
        """The batch's inputs as the framework's handler takes them."""
        if not self.decodes:
            return list(records)
        return self._prepare(self._decoder(records))

    def _prepare(self, columns: decoding.Columns) -> Any:
        inputs = self._mapping(columns)
        if self._preprocess is not None:
            inputs = self._preprocess(inputs)
        return self._to_examples(inputs)

    def run_inference(self, batch: Sequence[bytes], model: Any,
                      inference_args: Optional[Dict[str, Any]] = None):
        """One result per record: a prediction, or a `Failure` for a record that failed.

        A batch that fails is split until only the records that fail on their own are
        left, so one bad record never costs its neighbours their predictions.
        """
        records = list(batch)
        results: List[Optional[PredictionResult]] = [None] * len(records)
        self._infer(records, list(range(len(records))), model, inference_args, results)
        failed = [r.inference for r in results if isinstance(r.inference, Failure)]
        if failed:
            logging.warning("model %r: %d of %d records failed; first: %s at %s: %s",
                            self.model_name, len(failed), len(records),
                            failed[0].error_type, failed[0].stage, failed[0].message)
        return results

    def _infer(self, records, positions, model, inference_args, out):
        batch = [records[i] for i in positions]
        try:
            inputs = self._decoder(batch) if self.decodes else batch
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("decode", e, records, positions, model, inference_args, out)
            return
        try:
            if self.decodes:
                inputs = self._prepare(inputs)
        except decoding.InputError as e:
            bad = set(range(len(positions)) if e.rows is None else e.rows.tolist())
            for i in bad:
                out[positions[i]] = self._failure("preprocess", e, records[positions[i]])
            rest = [p for i, p in enumerate(positions) if i not in bad]
            if rest:
                self._infer(records, rest, model, inference_args, out)
            return
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("preprocess", e, records, positions, model, inference_args,
                                out)
            return
        try:
            inferred = list(self._inner.run_inference(inputs, model, inference_args))
            if len(inferred) != len(batch):
                raise RuntimeError(f"model {self.model_name!r} returned {len(inferred)} "
                                   f"results for a batch of {len(batch)} records")
        except Exception as e:  # pylint: disable=broad-except
            self._split_or_fail("inference", e, records, positions, model, inference_args,
                                out)
            return
        for position, result in zip(positions, inferred):
            out[position] = self._finish(
                PredictionResult(records[position], _inference(result), self.model_name))

    def _finish(self, result: PredictionResult) -> PredictionResult:
        if self._postprocess is None:
            return result
        try:
            return self._postprocess(result)
        except Exception as e:  # pylint: disable=broad-except
            return self._failure("postprocess", e, result.example)

    def _split_or_fail(self, stage, error, records, positions, model, inference_args, out):
        if len(positions) == 1:
            out[positions[0]] = self._failure(stage, error, records[positions[0]])
            return
        middle = len(positions) // 2
        for half in (positions[:middle], positions[middle:]):
            self._infer(records, half, model, inference_args, out)

    def _failure(self, stage: str, error: Exception, record: bytes) -> PredictionResult:
        return PredictionResult(
            record, Failure.from_exception(stage, error, record, self.model_name),
            self.model_name)

    def with_batch_size(self, size: int) -> "ExampleModelHandler":
        """A copy of this handler that runs batches of exactly `size` records."""
        clone = copy.copy(self)
        clone._batching_kwargs = {**self._batching_kwargs, "min_batch_size": size,
                                  "max_batch_size": size}
        return clone

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


def create_handler(model: ModelConfig, uri: Optional[str] = None, schema=None,
                   transform_output_dir: Optional[str] = None) -> ExampleModelHandler:
    """The handler for `model`, with its framework detected from `uri` when not set.

    schema: the examples' tensorflow_metadata Schema, when known; decoding then follows it
      (and skips features no model reads). Without one, types come from the data.
    transform_output_dir: a tf.Transform output; the records are then raw examples, and
      the model reads their transformed features.
    """
    framework, path = detection.resolve(uri or model.uri, model.framework)
    model = dataclasses.replace(model, framework=framework, uri=path)
    built = frameworks.build(model, path)
    if built.to_examples is not None and not model.inputs.features:
        raise ConfigError(f"model {model.name!r} ({framework}) needs inputs.features: the "
                          f"features it takes, in order")
    decoder = None
    if built.to_examples is not None:
        decoder = (decoding.TransformDecoder(transform_output_dir, model.inputs.features)
                   if transform_output_dir else
                   decoding.ExampleDecoder(schema, model.inputs.features))
    return ExampleModelHandler(model, built, decoder)
