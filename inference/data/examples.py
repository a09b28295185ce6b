"""tf.train.Example messages without importing TensorFlow.

The engine reads a feature value (routing), adds features (model chaining) and writes
examples (dead letters, JSON messages) on workers that may run PyTorch, scikit-learn or
ONNX models only; importing `tensorflow` for its Example class would cost each worker
process seconds and hundreds of MB. The messages here are built by protobuf from a copy of
TensorFlow's example.proto definitions, in a descriptor pool of their own (so they never
clash with TensorFlow's when both are loaded): the same wire format, parsed and written by
protobuf itself.
"""
import functools
import json
from typing import Any, Dict, Mapping, Optional

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "tensorflow"
_FILE = "tfx_runinference/example.proto"  # the pool's own file name


def _message(file: descriptor_pb2.FileDescriptorProto, name: str, fields):
    message = file.message_type.add(name=name)
    for number, (field_name, kind, label, type_name) in enumerate(fields, start=1):
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = f".{_PACKAGE}.{type_name}"
        if kind in (descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
                    descriptor_pb2.FieldDescriptorProto.TYPE_INT64):
            field.options.packed = True
    return message


@functools.lru_cache(maxsize=None)
def _classes() -> Dict[str, Any]:
    """Example, Features, Feature: tensorflow/core/example/{example,feature}.proto."""
    F = descriptor_pb2.FieldDescriptorProto
    repeated, optional = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    file = descriptor_pb2.FileDescriptorProto(name=_FILE, package=_PACKAGE, syntax="proto3")
    _message(file, "BytesList", [("value", F.TYPE_BYTES, repeated, None)])
    _message(file, "FloatList", [("value", F.TYPE_FLOAT, repeated, None)])
    _message(file, "Int64List", [("value", F.TYPE_INT64, repeated, None)])
    feature = _message(file, "Feature", [("bytes_list", F.TYPE_MESSAGE, optional, "BytesList"),
                                         ("float_list", F.TYPE_MESSAGE, optional, "FloatList"),
                                         ("int64_list", F.TYPE_MESSAGE, optional, "Int64List")])
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    features = file.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=optional)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=optional,
                    type_name=f".{_PACKAGE}.Feature")
    features.field.add(name="feature", number=1, type=F.TYPE_MESSAGE, label=repeated,
                       type_name=f".{_PACKAGE}.Features.FeatureEntry")
    _message(file, "Example", [("features", F.TYPE_MESSAGE, optional, "Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    factory = message_factory.MessageFactory(pool)
    return {name: factory.GetPrototype(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in ("Example", "Features", "Feature")}


def parse(record: bytes):
    """The tf.train.Example message of a serialized record (raises on bad bytes)."""
    return _classes()["Example"].FromString(record)


def values(example, name: str) -> Optional[list]:
    """The values of feature `name` of a parsed example; None when it is absent."""
    feature = example.features.feature.get(name)
    if feature is None:
        return None
    kind = feature.WhichOneof("kind")
    return list(getattr(feature, kind).value) if kind else []


def first_value(record: bytes, name: str) -> Optional[str]:
    """The first value of feature `name` of a serialized example, as text; None when the
    feature is absent or empty."""
    found = values(parse(record), name)
    if not found:
        return None
    first = found[0]
    return first.decode() if isinstance(first, bytes) else str(first)


def serialize(features: Mapping[str, Any]) -> bytes:
    """A serialized tf.train.Example of `features` ({name: values}); each value list is
    bytes/str, integers or floats, by the type of its values."""
    example = _classes()["Example"]()
    set_features(example, features)
    return example.SerializeToString()


def with_features(record: bytes, features: Mapping[str, Any]) -> bytes:
    """The serialized example `record` with `features` added (replacing any of the same
    names): protobuf merges a message with the bytes of another appended."""
    extra = _classes()["Example"]()
    set_features(extra, features)
    return record + extra.SerializeToString()


def set_features(example, features: Mapping[str, Any]):
    feature = example.features.feature
    for name, value in features.items():
        _fill(feature[name], value)


def _fill(feature, value: Any):
    """Sets a Feature to `value`: a scalar, a string or a list/array of values."""
    if isinstance(value, (bytes, str)):
        value = [value]
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, (bytes, str)) for v in value):
        # Not through NumPy: its fixed-width bytes arrays drop trailing NUL bytes.
        feature.bytes_list.value.extend(map(text, value))
        return
    array = np.asarray(value)
    if array.dtype.kind in "iub":
        feature.int64_list.value.extend(array.reshape(-1).astype(np.int64).tolist())
    elif array.dtype.kind == "f":
        feature.float_list.value.extend(array.reshape(-1).astype(np.float32).tolist())
    else:
        feature.bytes_list.value.extend(text(v) for v in array.reshape(-1).tolist())


def text(value: Any) -> bytes:
    """A value of a string feature or output as bytes: structured values (e.g. a Hugging
    Face token-classification entity, a dict) as JSON, anything else as its text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_plain).encode()
    return str(value).encode()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
