"""The examples' payload: tf.Example, or tf.SequenceExample as TFX's BulkInferrer reads it
(what each model can read of them is checked by `inference.engine.checks`)."""
from typing import List

from tfx.components.util import tfxio_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact

EXAMPLE = example_gen_pb2.FORMAT_TF_EXAMPLE
SEQUENCE_EXAMPLE = example_gen_pb2.FORMAT_TF_SEQUENCE_EXAMPLE


def payload_format(examples: List[artifact.Artifact]) -> int:
    """The examples' payload format (EXAMPLE or SEQUENCE_EXAMPLE), else ValueError."""
    payload, _ = tfxio_utils.resolve_payload_format_and_data_view_uri(examples)
    if payload not in (EXAMPLE, SEQUENCE_EXAMPLE):
        raise ValueError(f"BulkInferrer reads tf.Example or tf.SequenceExample records; the "
                         f"examples are {example_gen_pb2.PayloadFormat.Name(payload)}")
    return payload
