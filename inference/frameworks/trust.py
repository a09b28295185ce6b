"""The trust gate: model files are untrusted data.

A model file whose format can run code when it is loaded (a pickle, joblib, a full
`torch.load`, Keras 2 files with Lambda layers, Hugging Face `.bin` weights, anything a
custom handler may unpickle) is loaded only when its model is marked
`options={"trusted": True}`. Every model goes through `check` before it loads, whatever its
framework; a framework whose own loader needs trust for other reasons asks `require`.

The pipeline's configuration (import paths such as `preprocess_fn`, `model_class`, a
custom `handler`, module files) is code, and is trusted like the pipeline itself.
"""
import bz2
import json
import lzma
import pickletools
import posixpath
import zipfile
import zlib
from typing import List, Optional, Set

from apache_beam.io.filesystems import FileSystems

from inference import frameworks
from inference.config import ConfigError, ModelConfig

# What a file holds that can run code when loaded, as `check` finds it.
PICKLE = "pickle"  # pickled Python objects (pickle, joblib, legacy torch, torch.save of objects)
PICKLE_ARCHIVE = "pickle archive"  # a zip archive of tensors (torch.save of weights,
#   TorchScript): its pickles name only torch's own classes, so a weights-only loader reads
#   it safely; a full unpickler would run whatever a tampered one names
LAMBDA_LAYERS = "lambda layers"  # a Keras model whose Lambda layers hold Python bytecode

SAFE_FORMATS = ("ONNX (.onnx; skl2onnx for scikit-learn), safetensors, TorchScript or a "
                "weights-only PyTorch state dict, XGBoost JSON/UBJ, skops (.skops), Keras "
                "3 .keras files, TensorFlow SavedModels")

_HEAD = 64  # bytes read to recognise a format
_PICKLE_PROTOCOLS = {2, 3, 4, 5}
_MAX_FILES = 200  # files of a folder model looked at


def trusted(spec: ModelConfig) -> bool:
    """Whether the model is marked trusted: only True itself opts in."""
    return spec.options.get("trusted") is True


def require(spec: ModelConfig, path: str, why: str):
    """Raises ConfigError unless the model is trusted: loading `path` would run code
    because `why`."""
    if not trusted(spec):
        raise ConfigError(
            f"model {spec.name!r}: {path!r} {why}, so loading it can run whatever code the "
            f"file holds. Load it only if you trust where it came from, by setting "
            f"options={{'trusted': True}} on the model; or save the model in a format that "
            f"loads no code: {SAFE_FORMATS}.")


def check(spec: ModelConfig, path: str):
    """Refuses, unless the model is trusted, a model at `path` (a file, or a folder's
    files) holding contents that run code on load. The contents its framework's own loader
    reads without running code (its declared `safe_content`, e.g. PICKLE_ARCHIVE for
    PyTorch's weights-only loader) pass."""
    framework = frameworks.declared(spec.framework)
    if trusted(spec) or not framework.reads_files:  # a server loads it, not this process
        return
    safe = set(framework.safe_content)
    for file in _files(path):
        found = sniff(file)
        if found and found not in safe:
            require(spec, file, _REASONS[found])


_REASONS = {
    PICKLE: "holds pickled Python objects (a pickle, joblib or torch.save file)",
    PICKLE_ARCHIVE: "is a zip archive holding pickles (torch.save's format), which this "
                    "framework's loader unpickles in full",
    LAMBDA_LAYERS: "is a Keras model with Lambda layers, whose Python bytecode runs as the "
                   "model is rebuilt",
}
# Classes a weights archive may name: torch's own (tensors, storages, TorchScript modules)
# and the dict type state dicts are.
_WEIGHT_CLASSES = ("torch.", "__torch__.")
_WEIGHT_GLOBALS = {"collections.OrderedDict", "_codecs.encode"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def sniff(path: str) -> Optional[str]:
    """PICKLE, PICKLE_ARCHIVE, LAMBDA_LAYERS or None for the file at `path`, from its
    content (read, never loaded); None for an empty folder."""
    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            head = f.read(_HEAD)
    except IsADirectoryError:
        return None
    if (path.lower().endswith(_PICKLE_SUFFIXES) or _is_pickle(head)
            or _is_pickle(_decompressed_head(head, path))):
        return PICKLE
    if head[:4] == b"PK\x03\x04":
        return _sniff_zip(path)
    if head.startswith(_HDF5_MAGIC) and _hdf5_has_lambda_layers(path):
        return LAMBDA_LAYERS
    return None


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS


_DECOMPRESSORS = {  # first two bytes -> a decompressor of the stream
    b"\x1f\x8b": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    **{zlib_header: zlib.decompressobj for zlib_header in (b"\x78\x01", b"\x78\x5e",
                                                        b"\x78\x9c", b"\x78\xda")},
    b"BZ": bz2.BZ2Decompressor,
    b"\xfd7": lzma.LZMADecompressor,  # xz
    b"]\x00": lzma.LZMADecompressor,  # legacy .lzma
}
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav")  # by name, whatever compression


def _decompressed_head(head: bytes, path: str) -> bytes:
    """The first bytes of a compressed file's content (joblib compresses pickles with
    zlib, gzip, bz2 or lzma), or b""."""
    make = _DECOMPRESSORS.get(head[:2])
    if make is None:
        return b""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        data = f.read(1 << 16)
    try:
        return make().decompress(data)[:_HEAD]
    except (zlib.error, OSError, EOFError, lzma.LZMAError):
        return b""


def _sniff_zip(path: str) -> Optional[str]:
    """A torch archive: PICKLE_ARCHIVE when its pickles name only weight classes, PICKLE
    when they name any other; a Keras 3 file: LAMBDA_LAYERS when it has any."""
    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            archive = zipfile.ZipFile(f)
            pickles = [name for name in archive.namelist() if name.endswith(".pkl")]
            if pickles:
                named = set().union(*(_pickled_globals(archive.read(n)) for n in pickles))
                return PICKLE if any(not _is_weight_class(g) for g in named) else (
                    PICKLE_ARCHIVE)
            if "config.json" in archive.namelist():
                config = json.loads(archive.read("config.json"))
                return LAMBDA_LAYERS if _holds_lambda(config) else None
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    return None


def _pickled_globals(data: bytes) -> Set[str]:
    """The classes and functions a pickle names ("module.name"), read with pickletools,
    which parses opcodes and runs nothing. A name it cannot resolve counts as "?"."""
    named, strings = set(), []
    for opcode, argument, _ in pickletools.genops(data):
        if isinstance(argument, str) and "UNICODE" in opcode.name:
            strings.append(argument)
        elif opcode.name == "GLOBAL":
            named.add(argument.replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            named.add(".".join(strings[-2:]) if len(strings) >= 2 else "?")
    return named


def _is_weight_class(name: str) -> bool:
    return name.startswith(_WEIGHT_CLASSES) or name in _WEIGHT_GLOBALS


def _hdf5_has_lambda_layers(path: str) -> bool:
    """From a Keras 2 HDF5 file's model config."""
    import h5py
    with FileSystems.open(path, compression_type="uncompressed") as raw, h5py.File(
            raw, "r") as f:
        config = f.attrs.get("model_config")
    return config is not None and _holds_lambda(json.loads(config))


def _holds_lambda(node) -> bool:
    if isinstance(node, dict):
        return node.get("class_name") == "Lambda" or any(map(_holds_lambda, node.values()))
    return isinstance(node, list) and any(map(_holds_lambda, node))


def _files(path: str) -> List[str]:
    """The file at `path`, or the files of the folder (and its subfolders)."""
    found = FileSystems.match([posixpath.join(path.rstrip("/"), "**")])[0].metadata_list
    return sorted(m.path for m in found)[:_MAX_FILES] if found else [path]
