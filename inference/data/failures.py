"""Dead letters: a record that could not be inferred, why, where, and its original bytes.

One `Failure` type for every stage, batch and streaming alike. It is written as a
tf.train.Example to files (one per failed record; the `record` feature holds the original
serialized input, so dead letters can be read with the usual tools and replayed) and as a
JSON object to Pub/Sub or BigQuery (`to_json_row`, the record in base64).
"""
import base64
import dataclasses
from typing import Any, Dict

from inference.data import examples

# The tagged output that carries Failures out of a DoFn.
FAILURES_TAG = "failures"

# Where a record can fail, in the order of its path.
STAGES = ("read", "parse", "routing", "decode", "preprocess", "inference", "timeout",
          "postprocess", "encoding")

MESSAGE_LIMIT = 500  # characters of an error message kept


@dataclasses.dataclass(frozen=True)
class Failure:
    """One dead letter.

    source: where the record came from (a file and the record's index in it), or, for a
      read failure, the file and how much of it could not be read.
    lost: the records a read failure stands for (an estimate for a damaged file; 1 for a
      record-level failure).
    """
    stage: str
    error_type: str
    message: str
    record: bytes = b""
    model: str = ""
    split: str = ""
    source: str = ""
    lost: int = 1

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"unknown failure stage {self.stage!r}; stages: {STAGES}")

    @classmethod
    def from_exception(cls, stage: str, error: BaseException, record: bytes = b"",
                       model: str = "", split: str = "", source: str = "") -> "Failure":
        return cls(stage, type(error).__name__, shorten(str(error)) or repr(error),
                   record, model, split, source)

    def with_split(self, split: str) -> "Failure":
        return dataclasses.replace(self, split=split)

    def to_example(self) -> bytes:
        """The dead letter as a serialized tf.train.Example."""
        fields = dataclasses.asdict(self)
        return examples.serialize({name: [value if name == "record" else str(value)]
                                   for name, value in fields.items()})

    @classmethod
    def from_example(cls, serialized: bytes) -> "Failure":
        example = examples.parse(serialized)
        found = {f.name: examples.values(example, f.name) for f in dataclasses.fields(cls)}
        values = {name: value[0] for name, value in found.items() if value}
        values = {k: v if k == "record" else v.decode() for k, v in values.items()}
        if "lost" in values:
            values["lost"] = int(values["lost"])
        return cls(**values)

    def to_json_row(self) -> Dict[str, Any]:
        """The dead letter as a JSON-ready row (Pub/Sub, BigQuery): the record in base64."""
        row = dataclasses.asdict(self)
        row["record_base64"] = base64.b64encode(row.pop("record")).decode("ascii")
        return row


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."
