"""Which framework a model's files belong to, and which file inside a folder is the model.

Detection reads only file names and headers (never unpickles or loads a model), works on
local and remote (gs://) paths through tf.io.gfile, and is overridden by an explicit
`framework` in the configuration.
"""
import json
import posixpath
import zipfile
from typing import List, Optional, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from inference.config import ConfigError

# File suffix -> framework, for files that say what they are by name.
_SUFFIXES = {
    ".onnx": "onnx",
    ".ubj": "xgboost",
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".pickle": "sklearn",
    ".skops": "sklearn",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".trt": "tensorrt",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".torchscript": "pytorch",
    ".keras": "keras",  # Keras 3 files (zip archives: checked before the zip rule)
    ".h5": "keras",
}
_FRAMEWORK_SUFFIXES = {
    "onnx": (".onnx",),
    "xgboost": (".json", ".ubj"),
    "sklearn": (".joblib", ".pkl", ".pickle", ".skops"),
    "tensorrt": (".engine", ".plan", ".trt", ".onnx"),
    "pytorch": (".pt", ".pth", ".torchscript"),
    "keras": (".keras", ".h5"),
}
# Frameworks whose model is a whole folder.
_FOLDER_FRAMEWORKS = ("tensorflow", "keras", "huggingface")


def resolve(uri: str, framework: Optional[str] = None) -> Tuple[str, str]:
    """(framework, model path) for the model at `uri` (a file or a folder holding one)."""
    if not tf.io.gfile.exists(uri):
        raise ConfigError(f"model not found: {uri!r} does not exist")
    if not tf.io.gfile.isdir(uri):
        return framework or _detect_file(uri), uri
    if framework == "keras" and not tf.io.gfile.exists(posixpath.join(uri, "saved_model.pb")):
        files = _model_files(uri, framework)  # a folder holding one .keras file
        if len(files) == 1:
            return framework, files[0]
    if framework in _FOLDER_FRAMEWORKS or framework == "custom":
        return framework, uri
    if tf.io.gfile.exists(posixpath.join(uri, "saved_model.pb")):
        detected = _saved_model_kind(posixpath.join(uri, "saved_model.pb"))
        if framework is None or framework == detected:
            return detected, uri
    if framework is None and tf.io.gfile.exists(posixpath.join(uri, "config.json")):
        return "huggingface", uri
    candidates = _model_files(uri, framework)
    if len(candidates) != 1:
        listing = sorted(tf.io.gfile.listdir(uri))
        want = f"a {framework} model file" if framework else "exactly one model file"
        raise ConfigError(f"cannot tell which file in {uri!r} is the model: want {want}, "
                          f"found {candidates or 'none'} among {listing}. Point the model "
                          f"uri at the file, or set its framework.")
    path = candidates[0]
    return framework or _detect_file(path), path


def _model_files(folder: str, framework: Optional[str]) -> List[str]:
    suffixes = _FRAMEWORK_SUFFIXES.get(framework) if framework else tuple(_SUFFIXES)
    if suffixes is None:
        return []
    paths = sorted(posixpath.join(folder, name) for name in tf.io.gfile.listdir(folder)
                   if name.endswith(suffixes) and not name.endswith("/"))
    if framework is None:  # JSON files count when they are XGBoost models
        paths += sorted(posixpath.join(folder, name) for name in tf.io.gfile.listdir(folder)
                        if name.endswith(".json") and _is_xgboost_json(
                            posixpath.join(folder, name)))
    return paths


def _is_xgboost_json(path: str) -> bool:
    """From the file's head: XGBoost's JSON models start with their "learner" object."""
    with tf.io.gfile.GFile(path, "rb") as f:
        head = f.read(256)
    return head.lstrip()[:1] == b"{" and b'"learner"' in head


def _detect_file(path: str) -> str:
    suffix = posixpath.splitext(path)[1].lower()
    if suffix == ".json":
        return _json_kind(path)
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    with tf.io.gfile.GFile(path, "rb") as f:
        if zipfile.is_zipfile(f):  # torch.save / torch.jit.save archives are zip files
            return "pytorch"
    raise ConfigError(f"cannot detect the framework of {path!r} from its name or contents; "
                      f"set the model's framework explicitly")


def _json_kind(path: str) -> str:
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            content = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path!r} is not valid JSON: {e}") from e
    if isinstance(content, dict) and "learner" in content:
        return "xgboost"
    raise ConfigError(f"{path!r} is JSON but not an XGBoost model; set the framework")


def _saved_model_kind(saved_model_pb: str) -> str:
    """'tensorflow' when the serving signature takes serialized examples, else 'keras'."""
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(saved_model_pb, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        signature = meta_graph.signature_def.get("serving_default")
        if signature is None and meta_graph.signature_def:
            signature = next(iter(meta_graph.signature_def.values()))
        if signature is not None and len(signature.inputs) == 1:
            (tensor,) = signature.inputs.values()
            if tensor.dtype == tf.string.as_datatype_enum:
                return "tensorflow"
    return "keras"
