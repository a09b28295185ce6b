"""TensorFlow SavedModels whose signatures parse serialized tf.Examples: TFX BulkInferrer's
path, writing the PredictionLogs it writes.

A single predict signature runs in a TensorFlow session here, and the batch's logs are
written directly as bytes (`encoding.encode_signature_logs`): tfx_bsl builds each record's
log field by field with tf.make_tensor_proto, which costs more than the model. Classify,
regress and multi-inference signatures run through tfx_bsl's public model handler
(`CreateModelHandler`), whose logs are serialized as they are.

options: signature_name and tag (a name or a list, as TFX's ModelSpec; defaults
"serving_default" and "serve").
"""
import dataclasses
import importlib
import posixpath
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from tensorflow.core.protobuf import saved_model_pb2
from tfx_bsl.public.beam.run_inference import CreateModelHandler
from tfx_bsl.public.proto import model_spec_pb2

from inference.data import columns
from inference.config import ModelConfig
from inference.io.encoding import encode_signature_logs
from inference.frameworks import BeamHandler
from inference.data.columns import PREDICTION_LOG

# Packages whose custom ops a SavedModel may use; imported when present, as tfx_bsl does.
_ADDON_OPS = ("tensorflow_text", "tensorflow_decision_forests", "struct2tensor")


def takes_records(spec: ModelConfig) -> bool:
    return True


@dataclasses.dataclass
class PredictSignature:
    """A predict signature loaded in a session: feed the records, fetch the outputs."""
    session: Any
    name: str
    input_alias: str
    input_tensor: str
    outputs: Dict[str, str]  # alias -> tensor name

    def run(self, records: Sequence[bytes]) -> Dict[str, np.ndarray]:
        return self.session.run(self.outputs, feed_dict={self.input_tensor: list(records)})


def load(path: str, spec: ModelConfig):
    for package in _ADDON_OPS:
        try:
            importlib.import_module(package)
        except (ImportError, tf.errors.NotFoundError):
            pass
    signatures, tags = _names(spec, "signature_name"), _names(spec, "tag")
    predict_signature = _predict_signature(path, tags or [tf.saved_model.SERVING],
                                           signatures)
    if predict_signature is not None:
        return _load_predict(path, tags or [tf.saved_model.SERVING], predict_signature)
    return BeamHandler.load(CreateModelHandler(model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=path, signature_name=signatures, tag=tags))))


def predict(model, records: List[bytes], spec: ModelConfig):
    if isinstance(model, BeamHandler):
        return model.predict(records)
    outputs = columns.from_batch(model.run(records), len(records))
    logs = encode_signature_logs(records, outputs, model.input_alias, model.name)
    column = np.empty(len(logs), dtype=object)
    column[:] = logs
    return {PREDICTION_LOG: column}


def _predict_signature(path: str, tags: List[str], names: List[str]) -> Optional[str]:
    """The name of the signature to run when it is a single predict signature, else
    None (read from saved_model.pb, before anything loads)."""
    if len(names) > 1:
        return None
    name = names[0] if names else tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
    saved_model = saved_model_pb2.SavedModel()
    with FileSystems.open(posixpath.join(path, "saved_model.pb")) as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            signature = meta_graph.signature_def.get(name)
            if signature is not None and (signature.method_name
                                          == tf.saved_model.PREDICT_METHOD_NAME):
                return name
    return None


def _load_predict(path: str, tags: List[str], name: str) -> PredictSignature:
    session = tf.compat.v1.Session(graph=tf.compat.v1.Graph())
    signature = tf.compat.v1.saved_model.loader.load(session, tags, path).signature_def[name]
    if len(signature.inputs) != 1:
        raise ValueError(f"signature {name!r} of {path!r} takes {sorted(signature.inputs)}: "
                         f"a signature taking serialized examples has one input")
    (alias, tensor), = signature.inputs.items()
    return PredictSignature(session, name, alias, tensor.name,
                            {alias: signature.outputs[alias].name  # in a stable order
                             for alias in sorted(signature.outputs)})


def _names(spec: ModelConfig, option: str) -> List[str]:
    value = spec.options.get(option) or []
    return [value] if isinstance(value, str) else list(value)
