"""TensorFlow SavedModels whose signature parses serialized tf.Examples.

This is TFX BulkInferrer's path: tfx_bsl's in-process SavedModel handler runs the
classify / regress / predict / multi-inference signatures on the serialized records and
returns the same PredictionLogs BulkInferrer writes.
"""
from tfx_bsl.beam import run_inference as tfx_bsl_run_inference
from tfx_bsl.public.proto import model_spec_pb2

from inference.config import ModelConfig
from inference.frameworks import FrameworkHandler


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    signatures = model.options.get("signature_name") or []
    tags = model.options.get("tag") or []
    spec = model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=path,
            signature_name=[signatures] if isinstance(signatures, str) else signatures,
            tag=[tags] if isinstance(tags, str) else tags))
    handler = tfx_bsl_run_inference.create_model_handler(spec, None, None)
    return FrameworkHandler(handler, None)
