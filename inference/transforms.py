"""Beam transforms of the engine: serialized examples in, per-model predictions and dead
letters out, everything counted."""
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import PredictionResult, RunInference

from inference.config import InferenceConfig
from inference.encoding import to_prediction_log
from inference.failures import Failure, timeout_or_inference
from inference.handler import ExampleModelHandler, create_handler

COUNTERS_NAMESPACE = "tfx_runinference"
FAILURES_TAG = "failures"


def examples_counter(split: str) -> str:
    return f"examples_in|{split}"


def predictions_counter(model_name: str, split: str) -> str:
    return f"predictions|{model_name}|{split}"


def failures_counter(model_name: str, split: str, stage: str) -> str:
    return f"failures|{model_name}|{split}|{stage}"


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


class _SplitFailures(beam.DoFn):
    """Routes results holding a Failure to the failures output, counting both kinds."""

    def __init__(self, model_name: str, split: str):
        self._model_name, self._split = model_name, split
        self._counters = {}

    def setup(self):
        self._predictions = beam.metrics.Metrics.counter(
            COUNTERS_NAMESPACE, predictions_counter(self._model_name, self._split))

    def _count_failure(self, stage: str):
        if stage not in self._counters:
            self._counters[stage] = beam.metrics.Metrics.counter(
                COUNTERS_NAMESPACE, failures_counter(self._model_name, self._split, stage))
        self._counters[stage].inc()

    def process(self, result):
        if isinstance(result, Failure):
            failure = result.with_split(self._split)
        elif isinstance(result.inference, Failure):
            failure = result.inference.with_split(self._split)
        else:
            self._predictions.inc()
            yield result
            return
        self._count_failure(failure.stage)
        yield beam.pvalue.TaggedOutput(FAILURES_TAG, failure)


def _failed_batch_records(dead_letter, model_name: str):
    """Beam's (batch, (exception type, repr, traceback)) -> one Failure per record."""
    batch, (error_type, error_repr, _) = dead_letter
    stage = timeout_or_inference(error_type)
    message = error_repr if stage == "inference" else (
        "inference on the batch holding this record exceeded the timeout")
    for record in batch:
        yield Failure(stage, getattr(error_type, "__name__", str(error_type)), message,
                      record, model_name)


class InferenceOutputs(NamedTuple):
    predictions: Dict[str, beam.PCollection]  # model name -> PCollection[PredictionResult]
    failures: beam.PCollection  # PCollection[Failure], every model's


class InferExamples(beam.PTransform):
    """PCollection[bytes] -> InferenceOutputs: per model predictions, and dead letters.

    Every model sees every record. A record that fails (decode, input mapping, inference)
    becomes a Failure; none is dropped. With `timeout_secs`, a batch that runs longer is
    abandoned (Beam discards and reloads the model), and its records are retried one by
    one, so only the records that are slow on their own fail, at stage "timeout".
    """

    def __init__(self, handlers: Mapping[str, ExampleModelHandler], split: str = "",
                 timeout_secs: Optional[float] = None,
                 inference_args: Optional[dict] = None):
        super().__init__()
        self._handlers = handlers
        self._split = split
        self._timeout = timeout_secs
        self._inference_args = inference_args

    def expand(self, records):
        predictions, failures = {}, []
        for name, handler in self._handlers.items():
            results, failed = self._run(records, handler, f"RunInference[{name}]")
            outcomes = [results, failed]
            if self._timeout:
                outcomes[1:] = self._retry_one_by_one(failed, handler, name)
            split = (outcomes
                     | f"Outcomes[{name}]" >> beam.Flatten()
                     | f"SplitFailures[{name}]" >> beam.ParDo(
                         _SplitFailures(name, self._split)).with_outputs(
                             FAILURES_TAG, main="main"))
            predictions[name] = split.main
            failures.append(split[FAILURES_TAG])
        return InferenceOutputs(predictions, failures | "FlattenFailures" >> beam.Flatten(
            pipeline=records.pipeline))

    def _run(self, records, handler, label):
        results, dead = (records | label >> RunInference(
            handler, inference_args=self._inference_args).with_exception_handling(
                timeout=self._timeout))
        failed = dead.failed_inferences | f"{label}.Failed" >> beam.FlatMap(
            _failed_batch_records, handler.model_name)
        return results, failed

    def _retry_one_by_one(self, failed, handler, name):
        """Records of timed-out batches, inferred again in batches of one."""
        is_timeout = failed | f"TimedOut[{name}]" >> beam.Partition(
            lambda f, _: int(f.stage == "timeout"), 2)
        retried, still_failed = self._run(
            is_timeout[1] | f"Records[{name}]" >> beam.Map(lambda f: f.record),
            handler.with_batch_size(1), f"RetryOneByOne[{name}]")
        return [retried, is_timeout[0], still_failed]


class Encode(beam.PTransform):
    """PCollection[PredictionResult] -> bytes (`main`) and Failures (`failures`, stage
    encoding), with `encoder(result) -> bytes` one of the output formats' encoders."""

    def __init__(self, encoder: Callable[[PredictionResult], bytes], split: str = ""):
        super().__init__()
        self._encoder = encoder
        self._split = split

    def expand(self, results):
        encoder, split = self._encoder, self._split

        def encode(result: PredictionResult):
            try:
                yield encoder(result)
            except Exception as e:  # pylint: disable=broad-except
                yield beam.pvalue.TaggedOutput(FAILURES_TAG, Failure.from_exception(
                    "encoding", e, result.example, result.model_id or "", split))

        return results | beam.FlatMap(encode).with_outputs(FAILURES_TAG, main="main")


def prediction_log_encoder(output_names: Sequence[str] = ()) -> Callable[[PredictionResult],
                                                                         bytes]:
    """The encoder of serialized PredictionLogs, as TFX's BulkInferrer writes them."""
    names = tuple(output_names)
    return lambda result: to_prediction_log(result, names).SerializeToString()
