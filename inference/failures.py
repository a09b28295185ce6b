"""Dead letters: a record that could not be inferred, why, where, and its original bytes.

A `Failure` travels through Beam like any element and is written as a tf.train.Example
(one per failed record), so dead letters can be read with the usual tools and replayed:
the `record` feature holds the original serialized input.
"""
import concurrent.futures
import dataclasses
import functools
from typing import Optional


@functools.lru_cache(maxsize=None)
def example_class():
    """tf.train.Example, imported when first needed: dead letters are rare, and workers
    running other frameworks then never import TensorFlow."""
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel
    return example_pb2.Example


# The tagged output that carries Failures out of a DoFn.
FAILURES_TAG = "failures"

# Where a record can fail, in the order of its path.
STAGES = ("read", "routing", "decode", "preprocess", "inference", "timeout", "postprocess",
          "encoding")


@dataclasses.dataclass(frozen=True)
class Failure:
    """One dead letter."""
    stage: str
    error_type: str
    message: str
    record: bytes = b""
    model: str = ""
    split: str = ""
    source: str = ""  # for read failures: the file and record position

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"unknown failure stage {self.stage!r}; stages: {STAGES}")

    @classmethod
    def from_exception(cls, stage: str, error: BaseException, record: bytes = b"",
                       model: str = "", split: str = "", source: str = "") -> "Failure":
        return cls(stage, type(error).__name__, _first_line(str(error)) or repr(error),
                   record, model, split, source)

    def with_split(self, split: str) -> "Failure":
        return dataclasses.replace(self, split=split)

    def to_example(self) -> bytes:
        example = example_class()()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            example.features.feature[field.name].bytes_list.value.append(
                value if field.name == "record" else value.encode())
        return example.SerializeToString()

    @classmethod
    def from_example(cls, serialized: bytes) -> "Failure":
        feature = example_class().FromString(serialized).features.feature
        values = {f.name: feature[f.name].bytes_list.value[0]
                  for f in dataclasses.fields(cls) if f.name in feature}
        return cls(**{k: v if k == "record" else v.decode() for k, v in values.items()})


def _first_line(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def timeout_or_inference(exception_type: Optional[type]) -> str:
    """The stage of a batch that Beam's exception handling caught."""
    timeouts = (TimeoutError, concurrent.futures.TimeoutError)  # distinct before Python 3.11
    return "timeout" if isinstance(exception_type, type) and issubclass(
        exception_type, timeouts) else "inference"
