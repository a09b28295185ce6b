"""ImageExampleGen: image files by glob into an Examples artifact, for the BulkInferrer.

TFX's FileBasedExampleGen with an executor of its own (TFX's way to read a format of
one's own, as its Avro and Parquet executors do): one tf.Example per file, holding the
image's bytes, undecoded, as `image` and the file's path as `file`, the same examples
`inference.io.image_files.ReadImages` makes for the engine. The BulkInferrer decodes and resizes the
images (`InputSpec.image`); an image it cannot decode becomes a dead letter there. A file
that cannot be read at all fails this component, which has no dead-letter output.
"""
import os
from typing import Any, Dict

import apache_beam as beam
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from inference.data.failures import FAILURES_TAG, Failure
from inference.io.image_files import ReadImages


def image_example_gen(input_base: str, pattern: str = "*",
                      split: str = "images") -> FileBasedExampleGen:
    """The component: every file under `input_base` matching `pattern` (a glob relative
    to it, e.g. "*.jpg" or "*/*.png"), all in one split named `split`."""
    return FileBasedExampleGen(
        input_base=input_base,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=split, pattern=pattern)]),
        # No split_config: the input split is the output split, and no record is hashed.
        output_config=example_gen_pb2.Output(),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    ).with_id("ImageExampleGen")


def _unreadable(failure: Failure):
    raise IOError(f"ImageExampleGen: cannot read {failure.source}: {failure.message}; "
                  f"fix or remove the file")


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _ImagesToExamples(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                      split_pattern: str) -> beam.PCollection:
    pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                           split_pattern)
    read = pipeline | "ReadImages" >> ReadImages([pattern])
    _ = read[FAILURES_TAG] | "FailOnUnreadable" >> beam.Map(_unreadable)
    return read.main | "Records" >> beam.FlatMap(lambda chunk: chunk[1])


class Executor(BaseExampleGenExecutor):
    """Image files -> serialized tf.Examples (`image`: the file's bytes, `file`: its path)."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _ImagesToExamples
