"""The examples' payload: tf.Example, or tf.SequenceExample as TFX's BulkInferrer reads it.

TFX's BulkInferrer hands tf.SequenceExamples to tfx_bsl's RunInference: a predict
signature takes them serialized, as it takes tf.Examples (the model parses them), while
classify, regress and multi-inference signatures refuse them ("only supports raw or
serialized tf.train.Example"). TensorFlow models get the same here, refused before Beam
starts rather than in the middle of the run. Models of other frameworks read the context
features through their InputSpec (`inference.data.decoding.SequenceExampleDecoder`); a feature
list as a model input is refused before Beam starts.
"""
from typing import List, Mapping, Optional, Sequence

import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx.components.util import tfxio_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact

from inference import frameworks
from inference.frameworks import detection
from inference.io import tfrecord
from inference.config import ConfigError, InferenceConfig
from inference.data.decoding import SEQUENCE_COLUMN

EXAMPLE = example_gen_pb2.FORMAT_TF_EXAMPLE
SEQUENCE_EXAMPLE = example_gen_pb2.FORMAT_TF_SEQUENCE_EXAMPLE


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
        module = frameworks.get(framework)
        if frameworks.takes_records(module, model):
            # It parses the serialized SequenceExamples itself (a TensorFlow predict
            # signature, a custom handler given the raw records); its framework may say
            # what it cannot read.
            readable = getattr(module, "sequence_example_problems", None)
            problems += readable(path, model) if readable else []
            continue
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
