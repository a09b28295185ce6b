"""BulkInferrer's parameter, input and output names, and its ComponentSpec.

The names TFX's own BulkInferrer uses keep their meaning, so swapping the import in an
existing pipeline keeps it working; the rest are this component's additions.
"""
from tfx.proto import bulk_inferrer_pb2
from tfx.types import artifact, standard_artifacts, value_artifact
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from inference import bounded

# Inputs (as in TFX's BulkInferrer).
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
# Inputs added here: the examples' schema, Transform's graph, and an earlier run's
# `failures`, whose replayable dead letters are re-scored in place of `examples` (see
# `inference.replay`).
SCHEMA_KEY = "schema"
TRANSFORM_GRAPH_KEY = "transform_graph"
REPLAY_FAILURES_KEY = "replay_failures"
# Drift and skew (components/bulk_inferrer/drift.py): the baseline's prediction_statistics,
# and StatisticsGen's statistics of the training data.
BASELINE_KEY = "baseline"
STATISTICS_KEY = "statistics"

# Parameters (as in TFX's BulkInferrer).
MODEL_SPEC_KEY = "model_spec"
DATA_SPEC_KEY = "data_spec"
OUTPUT_EXAMPLE_SPEC_KEY = "output_example_spec"
# Parameters added here: the engine's InferenceConfig, as JSON; the share of failed records
# above which the component fails (after writing its dead letters); whether having no
# example to infer fails the component (by default it succeeds, as TFX's, with empty
# outputs and a warning).
INFERENCE_CONFIG_KEY = "inference_config"
MAX_FAILURE_FRACTION_KEY = "max_failure_fraction"
DEFAULT_MAX_FAILURE_FRACTION = bounded.DEFAULT_MAX_FAILURE_FRACTION
FAIL_ON_EMPTY_INPUT_KEY = "fail_on_empty_input"
# An inference.observe.drift.DriftConfig as JSON: thresholds, and whether a drift fails the run.
DRIFT_CONFIG_KEY = "drift_config"

# Outputs (as in TFX's BulkInferrer).
INFERENCE_RESULT_KEY = "inference_result"
OUTPUT_EXAMPLES_KEY = "output_examples"
# Outputs added here.
FAILURES_KEY = "failures"
REPORT_KEY = "report"
PREDICTION_STATISTICS_KEY = "prediction_statistics"
ANOMALIES_KEY = "anomalies"

# Output file name prefixes, as TFX's BulkInferrer writes them.
PREDICTION_LOGS_FILE_NAME = "prediction_logs"
EXAMPLES_FILE_NAME = "examples"
FAILURES_FILE_NAME = "failures"


class InferenceFailures(artifact.Artifact):
    """Dead letters of a BulkInferrer run: one tf.train.Example per record not inferred.

    Features: stage, model, split, error_type, message, source, and `record`, the original
    serialized input (replayable). Files: `<uri>/failures-*.gz`.
    """
    TYPE_NAME = "tfx_runinference.InferenceFailures"  # Vertex wants namespace.TypeName


class HTML(value_artifact.ValueArtifact):
    """The run report: one HTML page, the file at the artifact's uri.

    KFP's type name (`system.HTML`), which the Vertex AI Pipelines console opens ("View
    HTML"); a value artifact, so that every orchestrator gives it a file, as KFP does.
    TFX's Vertex AI entry point imports a custom artifact class by its type name, so the
    top-level module `system` (system.py) exports this class as `HTML`.
    """
    TYPE_NAME = "system.HTML"

    def encode(self, value: str) -> bytes:
        return value.encode("utf-8")

    def decode(self, serialized_value: bytes) -> str:
        return serialized_value.decode("utf-8")


class BulkInferrerSpec(ComponentSpec):
    """BulkInferrer component spec: TFX's BulkInferrerSpec plus the engine's additions."""

    PARAMETERS = {
        MODEL_SPEC_KEY: ExecutionParameter(type=bulk_inferrer_pb2.ModelSpec, optional=True),
        DATA_SPEC_KEY: ExecutionParameter(type=bulk_inferrer_pb2.DataSpec, optional=True),
        OUTPUT_EXAMPLE_SPEC_KEY: ExecutionParameter(
            type=bulk_inferrer_pb2.OutputExampleSpec, optional=True),
        INFERENCE_CONFIG_KEY: ExecutionParameter(type=str, optional=True),
        MAX_FAILURE_FRACTION_KEY: ExecutionParameter(type=float, optional=True),
        # 0 or 1: TFX's components declare flags as int (ML Metadata has no bool).
        FAIL_ON_EMPTY_INPUT_KEY: ExecutionParameter(type=int, optional=True),
        DRIFT_CONFIG_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                             optional=True),
        SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True),
        TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                              optional=True),
        REPLAY_FAILURES_KEY: ChannelParameter(type=InferenceFailures, optional=True),
        BASELINE_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                       optional=True),
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                         optional=True),
    }
    OUTPUTS = {
        INFERENCE_RESULT_KEY: ChannelParameter(type=standard_artifacts.InferenceResult,
                                               optional=True),
        OUTPUT_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples,
                                              optional=True),
        FAILURES_KEY: ChannelParameter(type=InferenceFailures),
        REPORT_KEY: ChannelParameter(type=HTML, optional=True),
        PREDICTION_STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                                    optional=True),
        ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies,
                                        optional=True),
    }
