"""The examples' payload: tf.Example, or tf.SequenceExample as TFX's BulkInferrer reads it.

TFX's BulkInferrer hands tf.SequenceExamples to tfx_bsl's RunInference: a predict
signature takes them serialized, as it takes tf.Examples (the model parses them), while
classify, regress and multi-inference signatures refuse them ("only supports raw or
serialized tf.train.Example"). TensorFlow models get the same here, refused before Beam
starts rather than in the middle of the run. Models of other frameworks read the context
features through their InputSpec (`inference.data.decoding.SequenceExampleDecoder`); a feature
list as a model input is refused before Beam starts.
"""
import os
from typing import Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow.core.protobuf import saved_model_pb2
from tfx.components.util import tfxio_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact

from inference.frameworks import detection
from inference.io import tfrecord
from inference.config import ConfigError, InferenceConfig
from inference.data.decoding import SEQUENCE_COLUMN

EXAMPLE = example_gen_pb2.FORMAT_TF_EXAMPLE
SEQUENCE_EXAMPLE = example_gen_pb2.FORMAT_TF_SEQUENCE_EXAMPLE
_PREDICT = tf.saved_model.PREDICT_METHOD_NAME


def payload_format(examples: List[artifact.Artifact]) -> int:
    """The examples' payload format (EXAMPLE or SEQUENCE_EXAMPLE), else ValueError."""
    payload, _ = tfxio_utils.resolve_payload_format_and_data_view_uri(examples)
    if payload not in (EXAMPLE, SEQUENCE_EXAMPLE):
        raise ValueError(f"BulkInferrer reads tf.Example or tf.SequenceExample records; the "
                         f"examples are {example_gen_pb2.PayloadFormat.Name(payload)}")
    return payload


def check_sequence_examples(config: InferenceConfig, model_uris: Mapping[str, str],
                            schema, splits: Mapping[str, Sequence[str]],
                            transform_dir: Optional[str]):
    """Raises ConfigError, saying what to change, for a model that cannot read the
    SequenceExamples: a TensorFlow model through a signature other than predict, or a
    model of another framework whose inputs name a feature list or that reads them
    through a Transform graph."""
    feature_lists = None  # read when a model needs them
    problems = []
    for model in config.models:
        framework, path = detection.resolve(model_uris.get(model.name) or model.uri,
                                            model.framework)
        if framework == "tensorflow":
            problems += [f"model {model.name!r}: signature {name!r} is a {method} signature, "
                         f"which takes tf.Examples only (as in TFX's BulkInferrer); export "
                         f"a predict signature that parses serialized SequenceExamples"
                         for name, method in _signature_methods(
                             path, model.options.get("signature_name")).items()
                         if method != _PREDICT]
            continue
        if framework == "custom" and model.options.get("raw_records"):
            continue  # its handler takes the serialized SequenceExamples as they are
        if transform_dir:
            problems.append(f"model {model.name!r}: a transform_graph parses tf.Examples; "
                            f"with SequenceExamples, transform them in the model (a "
                            f"TensorFlow predict signature) or upstream")
        if feature_lists is None:
            feature_lists = _feature_lists(schema, splits)
        wanted = sorted(set(model.inputs.features) & feature_lists)
        if wanted:
            problems.append(f"model {model.name!r} ({framework}) reads feature list(s) "
                            f"{wanted} of the SequenceExamples; models other than "
                            f"TensorFlow SavedModels read context features only: give "
                            f"it context features, or use a TensorFlow predict signature "
                            f"that parses the SequenceExamples")
    if problems:
        raise ConfigError("The examples are tf.SequenceExamples:\n  - "
                          + "\n  - ".join(problems))


def _signature_methods(path: str, names) -> Dict[str, str]:
    """Signature name -> method name (predict, classify, regress) of a SavedModel."""
    names = [names] if isinstance(names, str) else list(
        names or [tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY])
    saved_model = saved_model_pb2.SavedModel()
    with fileio.open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return {name: graph.signature_def[name].method_name
            for graph in saved_model.meta_graphs for name in names
            if name in graph.signature_def}


def _feature_lists(schema, splits: Mapping[str, Sequence[str]]) -> set:
    """The feature lists' names: from the schema's sequence STRUCT feature when there is
    a schema (TFX's SchemaGen writes one), else from the first record of the examples."""
    if schema is not None:
        return {f.name for feature in schema.feature if feature.name == SEQUENCE_COLUMN
                for f in feature.struct_domain.feature}
    record = _first_record([p for patterns in splits.values() for p in patterns])
    if record is None:
        return set()
    return set(tf.train.SequenceExample.FromString(record).feature_lists.feature_list)


def _first_record(patterns: Sequence[str]) -> Optional[bytes]:
    for pattern in patterns:
        for path in sorted(fileio.glob(pattern)):
            if fileio.isdir(path):
                continue
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
                for records in tfrecord.read_records(raw):
                    if records:
                        return records[0]
    return None
