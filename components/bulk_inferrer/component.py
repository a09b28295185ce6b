"""The BulkInferrer component: TFX's BulkInferrer arguments, any framework, many models."""
from typing import Optional, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import bulk_inferrer_pb2
from tfx.types import standard_artifacts

# visualizations: registers the notebook views of the outputs (InteractiveContext.show).
from components.bulk_inferrer import executor, spec, visualizations  # noqa: F401
from inference.config import InferenceConfig
from inference.observe.drift import DriftConfig


class BulkInferrer(base_beam_component.BaseBeamComponent):
    """Batch inference on examples with TensorFlow, PyTorch and other frameworks' models.

    A drop-in superset of `tfx.v1.components.BulkInferrer`: the same arguments, outputs and
    file layouts. Additions:
      inference_config: an `inference.config.InferenceConfig` (or its JSON, or a
        `RuntimeParameter` of type str holding the JSON, validated when the component
        runs): per model, the framework (detected from the model's files when unset),
        input mapping, batch sizes, `large_model`, `model_copies`, device. Default: one
        model from the `model` input, framework detected.
      schema: the examples' Schema, which makes decoding schema-driven and lets the
        model inputs be checked against the features before any work starts.
      transform_graph: Transform's output: the examples are then raw, and every
        non-TensorFlow model reads them transformed by exactly the training transform.
      max_failure_fraction: records that cannot be inferred go to the `failures` output
        (dead letters, always written); if more than this share of any model's inputs
        fail, the component fails, saying how many failed, where, and why.
      fail_on_empty_input: with no example to infer (empty splits, or none of the splits
        `data_spec` names), fail (`no examples to infer`). By default the component
        succeeds with empty outputs and a warning, as TFX's does.
      replay_failures: an earlier run's `failures`, in place of `examples`: re-scores the
        records of its dead letters that a retry can fix (stages inference and timeout,
        e.g. a model server that was down), each in its split, with the one model they
        failed for; bad input is not replayed.
      baseline: another run's `prediction_statistics`, which this run's predictions are
        compared with; `drift.previous_run(<this component's id>)` resolves the last
        successful run of this component in this pipeline (none on its first run).
      statistics: StatisticsGen's statistics of the training data: with `schema`, the
        sampled inputs are checked for training/serving skew.
      drift_config: an `inference.observe.drift.DriftConfig` (or its JSON): thresholds per kind
        of output or per output, and `action` "warn" (default) or "fail", which fails
        the component after its outputs and anomalies are written.

    Outputs: `inference_result` or `output_examples` as TFX's, plus `failures`,
    `report`, the run report (one HTML page, also written as `report.html` beside the
    predictions), `prediction_statistics` (TFDV statistics of the sampled predictions,
    the next run's baseline) and `anomalies` (drift and skew, as ExampleValidator's).

    Example:
      inferrer = BulkInferrer(
          examples=transform.outputs['transformed_examples'],
          model=trainer.outputs['model'],
          inference_config=InferenceConfig(models=[ModelConfig(
              inputs=InputSpec(features=['fare_xf', 'trip_miles_xf']),
              max_batch_size=1024)]))
    """

    SPEC_CLASS = spec.BulkInferrerSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
            self,
            examples: Optional[types.BaseChannel] = None,
            model: Optional[types.BaseChannel] = None,
            model_blessing: Optional[types.BaseChannel] = None,
            data_spec: Optional[Union[bulk_inferrer_pb2.DataSpec,
                                      data_types.RuntimeParameter]] = None,
            model_spec: Optional[Union[bulk_inferrer_pb2.ModelSpec,
                                       data_types.RuntimeParameter]] = None,
            output_example_spec: Optional[Union[bulk_inferrer_pb2.OutputExampleSpec,
                                                data_types.RuntimeParameter]] = None,
            inference_config: Optional[Union[InferenceConfig, str,
                                             data_types.RuntimeParameter]] = None,
            schema: Optional[types.BaseChannel] = None,
            transform_graph: Optional[types.BaseChannel] = None,
            max_failure_fraction: float = spec.DEFAULT_MAX_FAILURE_FRACTION,
            fail_on_empty_input: bool = False,
            replay_failures: Optional[types.BaseChannel] = None,
            baseline: Optional[types.BaseChannel] = None,
            statistics: Optional[types.BaseChannel] = None,
            drift_config: Optional[Union[DriftConfig, str]] = None):
        if examples is None and replay_failures is None:
            raise ValueError("BulkInferrer needs `examples`, or `replay_failures` (an "
                             "earlier run's `failures`) to re-score its dead letters")
        if isinstance(inference_config, data_types.RuntimeParameter):
            if inference_config.ptype is not str:
                raise TypeError(f"inference_config: a RuntimeParameter of type str (the "
                                f"config's JSON), got {inference_config.ptype}")
        elif inference_config:  # checked where the pipeline is defined, not hours into a run
            if isinstance(inference_config, str):
                inference_config = InferenceConfig.from_json(inference_config)
            inference_config = inference_config.validate(bounded=True).to_json()
        if not 0.0 <= max_failure_fraction <= 1.0:
            raise ValueError(f"max_failure_fraction={max_failure_fraction}: must be in [0, 1]")
        if isinstance(drift_config, str):
            drift_config = DriftConfig.from_json(drift_config)
        if output_example_spec:
            outputs = {spec.OUTPUT_EXAMPLES_KEY: types.Channel(type=standard_artifacts.Examples)}
        else:
            outputs = {spec.INFERENCE_RESULT_KEY:
                       types.Channel(type=standard_artifacts.InferenceResult)}
        super().__init__(spec=spec.BulkInferrerSpec(
            examples=examples,
            model=model,
            model_blessing=model_blessing,
            schema=schema,
            transform_graph=transform_graph,
            replay_failures=replay_failures,
            data_spec=data_spec or bulk_inferrer_pb2.DataSpec(),
            model_spec=model_spec or bulk_inferrer_pb2.ModelSpec(),
            output_example_spec=output_example_spec,
            inference_config=inference_config,
            max_failure_fraction=float(max_failure_fraction),
            fail_on_empty_input=int(fail_on_empty_input),
            baseline=baseline,
            statistics=statistics,
            drift_config=drift_config.validate().to_json() if drift_config else None,
            prediction_statistics=types.Channel(type=standard_artifacts.ExampleStatistics),
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies),
            failures=types.Channel(type=spec.InferenceFailures),
            report=types.Channel(type=spec.HTML),
            **outputs))
