"""Checks of a bounded run's models against its data, made before Beam starts: the
features each model reads exist (in the examples' schema, or among a tf.Transform graph's
outputs), and a model given tf.SequenceExamples can read them.

TFX's BulkInferrer hands tf.SequenceExamples to tfx_bsl's RunInference: a predict
signature takes them serialized, as it takes tf.Examples (the model parses them), while
classify, regress and multi-inference signatures refuse them ("only supports raw or
serialized tf.train.Example"). TensorFlow models get the same here, refused before Beam
starts rather than in the middle of the run. Models of other frameworks read the context
features through their InputSpec (`inference.data.decoding.SequenceExampleDecoder`); a
feature list as a model input is refused before Beam starts.
"""
from typing import Iterable, List, Mapping, Optional, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from inference import frameworks
from inference.config import ConfigError, ModelConfig
from inference.data.decoding import SEQUENCE_COLUMN
from inference.io import tfrecord


def check_features(specs: Sequence[ModelConfig], available: Iterable[str], source: str):
    """Model inputs must be available features: says which are not, up front."""
    available = set(available)
    problems = [f"model {m.name!r} reads {sorted(set(m.inputs.features) - available)}"
                for m in specs if set(m.inputs.features) - available]
    if problems:
        raise ConfigError(f"model inputs do not match {source}: " + "; ".join(problems)
                          + f". Available: {sorted(available)}")


def check_sequence_examples(specs: Sequence[ModelConfig], schema,
                            splits: Mapping[str, Sequence[str]],
                            transform_dir: Optional[str]):
    """Raises ConfigError, saying what to change, for a model (`specs`: the models, their
    framework and uri resolved) that cannot read the SequenceExamples: a TensorFlow model
    through a signature other than predict, or a model of another framework whose inputs
    name a feature list or that reads them through a Transform graph."""
    feature_lists = None  # read when a model needs them
    problems = []
    for model in specs:
        framework, path = model.framework, model.uri
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
    import tensorflow as tf
    if schema is not None:
        return {f.name for feature in schema.feature if feature.name == SEQUENCE_COLUMN
                for f in feature.struct_domain.feature}
    record = _first_record([p for patterns in splits.values() for p in patterns])
    if record is None:
        return set()
    return set(tf.train.SequenceExample.FromString(record).feature_lists.feature_list)


def _first_record(patterns: Sequence[str]) -> Optional[bytes]:
    import tensorflow as tf
    for pattern in patterns:
        for path in sorted(tf.io.gfile.glob(pattern)):
            if tf.io.gfile.isdir(path):
                continue
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
                for records in tfrecord.read_records(raw):
                    if records:
                        return records[0]
    return None


def transformed_features(transform_dir: str) -> List[str]:
    """The features a tf.Transform graph outputs (what a model behind it may read)."""
    import tensorflow_transform as tft
    return list(tft.TFTransformOutput(transform_dir).transformed_feature_spec())
