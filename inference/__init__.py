"""The inference engine: a multi-framework RunInference core for serialized tf.Examples.

Plain Beam, no TFX orchestration imports: usable from a TFX executor, a batch Beam pipeline
or a streaming one. The folders are its layers, each importing only those below it:

    config       what a user writes: InferenceConfig, ModelConfig, InputSpec
    data         the record and what is made of it: decoding, results, dead letters
    observe      what a run tells about itself: metrics, progress, drift
    io           sources, sinks and encodings: TFRecords, images, PredictionLogs, rows
    remote       model servers over HTTP: protocols, retries, the circuit breaker
    frameworks   how each framework's model files load and run on a batch
    engine       RunInference over chunks: handlers, routing, the shared transforms
    bounded, batch, streaming, replay    the runs (`python -m inference.batch`, ...)

The record's path: chunks of serialized records -> `InferExamples` (one decode per batch,
the framework's predict, per-record failure isolation) -> a `ChunkResult` per model ->
`Encode` (PredictionLogs, tf.Examples or rows) -> a sink; every failure -> a dead letter.
"""
from inference.bounded import Output, Plan, RunFailed, check, make_plan
from inference.config import (
    ConfigError,
    ImageSpec,
    InferenceConfig,
    InputSpec,
    LabelSpec,
    ModelConfig,
)
from inference.data.failures import Failure
from inference.engine.models import create_handler, create_handlers
from inference.engine.transforms import Encode, InferExamples
from inference.io.dead_letters import CountFailures, WriteFailures, read_failures
from inference.io.encoding import encode_logs
from inference.io.image_files import ReadImages
from inference.io.records import ReadRecords, WriteRecordChunks
from inference.io.rows import RowSpec

__all__ = [
    "ConfigError", "CountFailures", "Encode", "Failure", "ImageSpec", "InferExamples",
    "InferenceConfig", "InputSpec", "LabelSpec", "ModelConfig", "Output", "Plan",
    "ReadImages", "ReadRecords", "RowSpec", "RunFailed", "WriteFailures", "WriteRecordChunks",
    "check", "create_handler", "create_handlers", "encode_logs", "make_plan", "read_failures",
]
