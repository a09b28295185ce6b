"""Which framework a model's files belong to, and which file inside a folder is the model.

Detection reads only file names and headers (never unpickles or loads a model), works on
local and remote (gs://) paths through Beam's FileSystems, and is overridden by an
explicit `framework` in the configuration.
"""
import json
import posixpath
import zipfile
from typing import List, Optional, Tuple

from apache_beam.io.filesystems import FileSystems

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
    if framework == "remote":  # a server's URL or an endpoint's name: no files to read
        return framework, uri
    uri = uri.rstrip("/") or uri
    names = _listdir(uri)
    if names is None:
        if not FileSystems.exists(uri):
            raise ConfigError(f"model not found: {uri!r} does not exist")
        return framework or _detect_file(uri), uri
    saved_model = "saved_model.pb" in names
    if framework == "keras" and not saved_model:
        files = _model_files(uri, names, framework)  # a folder holding one .keras file
        if len(files) == 1:
            return framework, files[0]
    if framework in _FOLDER_FRAMEWORKS or framework == "custom":
        return framework, uri
    if saved_model:
        detected = _saved_model_kind(posixpath.join(uri, "saved_model.pb"))
        if framework is None or framework == detected:
            return detected, uri
    if framework is None and "config.json" in names:
        return "huggingface", uri
    candidates = _model_files(uri, names, framework)
    if len(candidates) != 1:
        want = f"a {framework} model file" if framework else "exactly one model file"
        raise ConfigError(f"cannot tell which file in {uri!r} is the model: want {want}, "
                          f"found {candidates or 'none'} among {sorted(names)}. Point the "
                          f"model uri at the file, or set its framework.")
    path = candidates[0]
    return framework or _detect_file(path), path


def _listdir(path: str) -> Optional[List[str]]:
    """The names in the folder `path` (files, and subfolders once each), or None when it is
    not a folder."""
    found = FileSystems.match([posixpath.join(path, "**")])[0].metadata_list
    if not found:
        return None
    prefix = path.rstrip("/") + "/"
    return sorted({m.path[len(prefix):].split("/", 1)[0] for m in found})


def _model_files(folder: str, names: List[str], framework: Optional[str]) -> List[str]:
    suffixes = _FRAMEWORK_SUFFIXES.get(framework) if framework else tuple(_SUFFIXES)
    if suffixes is None:
        return []
    paths = [posixpath.join(folder, name) for name in names if name.endswith(suffixes)]
    if framework is None:  # JSON files count when they are XGBoost models
        paths += [posixpath.join(folder, name) for name in names
                  if name.endswith(".json") and _is_xgboost_json(posixpath.join(folder, name))]
    return sorted(paths)


def _read(path: str, size: int = -1) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read(size)


def _is_xgboost_json(path: str) -> bool:
    """From the file's head: XGBoost's JSON models start with their "learner" object."""
    head = _read(path, 256)
    return head.lstrip()[:1] == b"{" and b'"learner"' in head


def _detect_file(path: str) -> str:
    suffix = posixpath.splitext(path)[1].lower()
    if suffix == ".json":
        return _json_kind(path)
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    with FileSystems.open(path, compression_type="uncompressed") as f:
        if zipfile.is_zipfile(f):  # torch.save / torch.jit.save archives are zip files
            return "pytorch"
    raise ConfigError(f"cannot detect the framework of {path!r} from its name or contents; "
                      f"set the model's framework explicitly")


def _json_kind(path: str) -> str:
    try:
        content = json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path!r} is not valid JSON: {e}") from e
    if isinstance(content, dict) and "learner" in content:
        return "xgboost"
    raise ConfigError(f"{path!r} is JSON but not an XGBoost model; set the framework")


def _saved_model_kind(saved_model_pb: str) -> str:
    """'tensorflow' when the serving signature takes serialized examples, else 'keras'."""
    from tensorflow.core.framework import types_pb2  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    saved_model = saved_model_pb2.SavedModel.FromString(_read(saved_model_pb))
    for meta_graph in saved_model.meta_graphs:
        signature = meta_graph.signature_def.get("serving_default")
        if signature is None and meta_graph.signature_def:
            signature = next(iter(meta_graph.signature_def.values()))
        if signature is not None and len(signature.inputs) == 1:
            (tensor,) = signature.inputs.values()
            if tensor.dtype == types_pb2.DT_STRING:
                return "tensorflow"
    return "keras"
