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

from inference.config import ModelConfig
from inference.data import columns
from inference.data.columns import PREDICTION_LOG
from inference.frameworks import BeamHandler, Framework, file_head
from inference.io.encoding import encode_signature_logs

# Packages whose custom ops a SavedModel may use; imported when present, as tfx_bsl does.
_ADDON_OPS = ("tensorflow_text", "tensorflow_decision_forests", "struct2tensor")
_PREDICT = "tensorflow/serving/predict"  # tf.saved_model.PREDICT_METHOD_NAME


def _takes_examples(folder: str, names: Sequence[str]) -> bool:
    """A SavedModel whose serving signature takes serialized examples (one string input),
    from its saved_model.pb (read, not loaded)."""
    if "saved_model.pb" not in names:
        return False
    from tensorflow.core.framework import types_pb2
    for meta_graph in _saved_model(folder).meta_graphs:
        signature = meta_graph.signature_def.get("serving_default")
        if signature is None and meta_graph.signature_def:
            signature = next(iter(meta_graph.signature_def.values()))
        if signature is not None and len(signature.inputs) == 1:
            (tensor,) = signature.inputs.values()
            if tensor.dtype == types_pb2.DT_STRING:
                return True
    return False


FRAMEWORK = Framework(folder=_takes_examples, whole_folder=True, signatures=True)


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
    import tensorflow as tf
    from tfx_bsl.public.beam.run_inference import CreateModelHandler
    from tfx_bsl.public.proto import model_spec_pb2
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
    name = names[0] if names else _DEFAULT_SIGNATURE
    for meta_graph in _saved_model(path).meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            signature = meta_graph.signature_def.get(name)
            if signature is not None and signature.method_name == _PREDICT:
                return name
    return None


_DEFAULT_SIGNATURE = "serving_default"  # tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY


def _saved_model(path: str):
    from tensorflow.core.protobuf import saved_model_pb2
    return saved_model_pb2.SavedModel.FromString(
        file_head(posixpath.join(path, "saved_model.pb")))


def sequence_example_problems(path: str, spec: ModelConfig) -> List[str]:
    """What keeps the model from reading tf.SequenceExamples: each signature it runs that is
    not a predict signature (classify, regress and multi-inference ones take tf.Examples
    only, as in TFX's BulkInferrer)."""
    names = _names(spec, "signature_name") or [_DEFAULT_SIGNATURE]
    methods = {name: graph.signature_def[name].method_name
               for graph in _saved_model(path).meta_graphs for name in names
               if name in graph.signature_def}
    return [f"model {spec.name!r}: signature {name!r} is a {method} signature, which takes "
            f"tf.Examples only (as in TFX's BulkInferrer); export a predict signature that "
            f"parses serialized SequenceExamples"
            for name, method in methods.items() if method != _PREDICT]


def _load_predict(path: str, tags: List[str], name: str) -> PredictSignature:
    import tensorflow as tf
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
