"""TensorFlow SavedModels whose signature parses serialized tf.Examples.

This is TFX BulkInferrer's path: tfx_bsl's in-process SavedModel handler runs the
classify / regress / predict / multi-inference signatures on the serialized records and
returns the same PredictionLogs BulkInferrer writes.
"""
from tensorflow_serving.apis import prediction_log_pb2
from tfx_bsl.beam import run_inference as tfx_bsl_run_inference
from tfx_bsl.public.proto import model_spec_pb2

from inference.config import ModelConfig
from inference.encoding import encode_signature_logs
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
    if type(handler) is _TfxBslPredict:  # noqa: E721  (not its subclasses)
        handler = PredictLogsHandler(spec, None)
    return FrameworkHandler(handler, None)


# tfx_bsl's handler for one predict signature (a private class, pinned by the lock file).
_TfxBslPredict = tfx_bsl_run_inference._PredictModelHandler  # pylint: disable=protected-access


class PredictLogsHandler(_TfxBslPredict):
    """tfx_bsl's predict-signature handler, building the same PredictionLogs from bytes.

    tfx_bsl builds each record's log field by field with tf.make_tensor_proto, which costs
    more than the model; here the batch's logs are written directly (see
    `encoding.encode_signature_logs`) and parsed, the same messages at a fraction of the
    cost (tests/components/test_bulk_inferrer.py compares them with TFX's).
    """

    def _post_process(self, examples, serialized_examples, outputs):
        del examples
        batch_size = len(serialized_examples)
        for alias, output in outputs.items():
            if len(output.shape) < 1 or output.shape[0] != batch_size:
                raise ValueError(f"output {alias!r} has shape {output.shape}; expected a "
                                 f"leading dimension of the batch size, {batch_size}")
        logs = encode_signature_logs(serialized_examples, outputs,
                                     self._io_tensor_spec.input_tensor_alias,
                                     self._signatures[0].name)
        return [prediction_log_pb2.PredictionLog.FromString(log) for log in logs]
