"""Predictions as rows: JSON objects (Pub/Sub) and typed BigQuery rows, one schema for both.

A row holds one record's prediction by one model:

    {"model": "pytorch", "event_time": "2024-05-01T12:00:00.000000Z",   # the model's name
     "fare": 12.5, "company": "Flash Cab",                               # selected features
     "output_0": 0.83, "embedding": [0.1, 0.2, ...]}                     # the model's outputs

`RowSpec` says which features are copied from the record and how each output is typed:
FLOAT (one value) or ARRAY<FLOAT> (a REPEATED FLOAT column), or INTEGER / STRING / BOOLEAN
and their ARRAY<...> forms. `bigquery_schema()` is the matching explicit BigQuery
`TableSchema`; `to_rows()` encodes a chunk's results (columns, or the PredictionLogs a
TensorFlow model wrote) as rows of that schema; `to_json()` a row as the bytes of a Pub/Sub
message.
"""
import dataclasses
import datetime
import json
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from inference.config import InferenceConfig
from inference.data import examples
from inference.data.results import ChunkResult

TYPES = ("FLOAT", "INTEGER", "STRING", "BOOLEAN")
_FIELD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"(?::(?:(?P<array>ARRAY)(?:<(?P<item>[A-Z]+)>)?|(?P<type>[A-Z]+)))?$")


class RowError(ValueError):
    """A record or prediction that does not fit the row schema."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One column: a name, a BigQuery type, and whether it holds an array (REPEATED)."""
    name: str
    type: str = "FLOAT"
    repeated: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"field {self.name!r}: type {self.type!r} is not one of {TYPES}")

    @classmethod
    def parse(cls, text: str) -> "Field":
        """`name`, `name:FLOAT`, `name:ARRAY` (= ARRAY<FLOAT>), `name:ARRAY<INTEGER>`, ..."""
        name, _, kind = text.strip().partition(":")
        match = _FIELD.match(f"{name.strip()}:{kind.strip().upper()}" if kind else name.strip())
        if not match:
            raise ValueError(f"bad field {text!r}: want name, name:TYPE or name:ARRAY<TYPE> "
                             f"with TYPE one of {TYPES}")
        if match.group("array"):
            return cls(match.group("name"), match.group("item") or "FLOAT", True)
        return cls(match.group("name"), match.group("type") or "FLOAT", False)

    def bigquery_field(self):
        from apache_beam.io.gcp.internal.clients import bigquery
        field = bigquery.TableFieldSchema()
        field.name = self.name
        field.type = self.type
        field.mode = "REPEATED" if self.repeated else "NULLABLE"
        return field

    def convert(self, values: Sequence[Any], what: str) -> Any:
        """`values` (a flat sequence) as this field's value: a scalar or a list."""
        converted = [_convert(v, self.type) for v in values]
        if self.repeated:
            return converted
        if not converted:
            return None
        if len(converted) != 1:
            raise RowError(f"{what} {self.name!r} has {len(converted)} values; declare it "
                           f"as {self.name}:ARRAY<{self.type}> to keep them all")
        return converted[0]


def _convert(value: Any, kind: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if kind == "FLOAT":
        return float(value)
    if kind == "INTEGER":
        return int(value)
    if kind == "BOOLEAN":
        return bool(value)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class RowSpec:
    """The row layout: model name, event time, selected features, typed outputs.

    features: fields copied from each input tf.Example (a missing feature is null / []).
    outputs: the model outputs, by name (`output_0`, ... for unnamed outputs, see
      `inference.io.encoding.named_outputs`); None keeps every output, as a number when it
      holds one value and a list otherwise (JSON only: BigQuery needs declared outputs).
    """
    features: List[Field] = dataclasses.field(default_factory=list)
    outputs: Optional[List[Field]] = None
    model_field: str = "model"
    time_field: Optional[str] = "event_time"

    @classmethod
    def parse(cls, features: str = "", outputs: Optional[str] = None) -> "RowSpec":
        """From comma-separated fields, e.g. features="fare,company:STRING",
        outputs="output_0:FLOAT,embedding:ARRAY<FLOAT>"."""
        def fields(text):
            return [Field.parse(part) for part in text.split(",") if part.strip()]
        return cls(fields(features), None if outputs is None else fields(outputs))

    @classmethod
    def for_config(cls, config: InferenceConfig) -> "RowSpec":
        """Default rows: every model's input features (FLOAT), outputs kept as they come."""
        names = []
        for model in config.models:
            names += [n for n in model.inputs.features if n not in names]
        return cls(features=[Field(n) for n in names])

    def fields(self) -> List[Field]:
        if self.outputs is None:
            raise RowError("the row outputs are not declared: give them (e.g. "
                           "'output_0:FLOAT') to build a BigQuery schema")
        names = [self.model_field] + ([self.time_field] if self.time_field else [])
        names += [f.name for f in self.features] + [f.name for f in self.outputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RowError(f"row fields {duplicates} are declared twice")
        return list(self.features) + list(self.outputs)

    def bigquery_schema(self):
        """The explicit BigQuery `TableSchema` of these rows."""
        from apache_beam.io.gcp.internal.clients import bigquery
        schema = bigquery.TableSchema()
        model = bigquery.TableFieldSchema()
        model.name, model.type, model.mode = self.model_field, "STRING", "REQUIRED"
        schema.fields.append(model)
        if self.time_field:
            when = bigquery.TableFieldSchema()
            when.name, when.type, when.mode = self.time_field, "TIMESTAMP", "NULLABLE"
            schema.fields.append(when)
        for field in self.fields():
            schema.fields.append(field.bigquery_field())
        return schema

    def arrow_schema(self):
        """The pyarrow schema of these rows (Parquet files): FLOAT as float64, as
        BigQuery's FLOAT; REPEATED fields as lists; the event time as its ISO 8601 text,
        as in the JSON rows."""
        import pyarrow as pa
        types = {"FLOAT": pa.float64(), "INTEGER": pa.int64(), "STRING": pa.string(),
                 "BOOLEAN": pa.bool_()}
        fields = [pa.field(self.model_field, pa.string(), nullable=False)]
        if self.time_field:
            fields.append(pa.field(self.time_field, pa.string()))
        fields += [pa.field(f.name, pa.list_(types[f.type]) if f.repeated else types[f.type])
                   for f in self.fields()]
        return pa.schema(fields)

    def from_prediction_logs(self, logs: Sequence[bytes]) -> List[Dict[str, Any]]:
        """The rows of serialized PredictLog PredictionLogs (as the BulkInferrer writes
        them): features from each request's example, outputs from its response, the model
        from its model_spec."""
        rows = []
        for serialized in logs:
            log = _predict_log(serialized)
            examples_ = log.request.inputs.get("examples")
            if examples_ is None or len(examples_.string_val) != 1:
                raise RowError("a PredictionLog without its one input example "
                               "(request input 'examples')")
            rows.append(self._row(examples_.string_val[0], log.request.model_spec.name,
                                  _log_outputs(log), None))
        return rows

    def to_rows(self, result: ChunkResult, timestamp: Optional[float] = None
                ) -> List[Dict[str, Any]]:
        """The rows of a chunk's predictions. Raises RowError when one does not fit."""
        outputs = _outputs(result)
        return [self._row(record, result.model, {n: o[i] for n, o in outputs.items()},
                          timestamp)
                for i, record in enumerate(result.records)]

    def _row(self, record: bytes, model: str, outputs: Mapping[str, np.ndarray],
             timestamp: Optional[float]) -> Dict[str, Any]:
        row: Dict[str, Any] = {self.model_field: model}
        if self.time_field:
            row[self.time_field] = _iso(timestamp) if timestamp is not None else None
        example = _parse(record) if self.features else None
        for field in self.features:
            row[field.name] = field.convert(examples.values(example, field.name) or [],
                                            "feature")
        if self.outputs is None:
            for name, value in outputs.items():
                value = np.asarray(value)
                flat = value.reshape(-1).tolist()
                row[name] = flat[0] if value.size == 1 else flat
                if isinstance(row[name], bytes):
                    row[name] = row[name].decode("utf-8", "replace")
            return row
        for field in self.outputs:
            value = outputs.get(field.name)
            row[field.name] = field.convert(
                [] if value is None else np.asarray(value).reshape(-1).tolist(), "output")
        return row


def to_json(row: Mapping[str, Any]) -> bytes:
    """A row as the UTF-8 JSON bytes of a Pub/Sub message (NaN and infinities -> null)."""
    return json.dumps(_finite(dict(row)), sort_keys=True, allow_nan=False).encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(float(seconds), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(record: bytes):
    try:
        return examples.parse(record)
    except Exception as e:
        raise RowError(f"the record is not a serialized tf.Example: {e}") from e


def _outputs(result: ChunkResult) -> Mapping[str, np.ndarray]:
    """A result's output columns; the PredictionLogs a TensorFlow model wrote, as their
    outputs."""
    if result.prediction_logs is None:
        return result.outputs
    rows = [_log_outputs(_predict_log(serialized)) for serialized in result.prediction_logs]
    return {name: [row[name] for row in rows] for name in (rows[0] if rows else {})}


def _predict_log(serialized: bytes):
    """The PredictLog of a serialized PredictionLog; RowError for another kind of log."""
    from tensorflow_serving.apis import prediction_log_pb2
    log = prediction_log_pb2.PredictionLog.FromString(serialized)
    if log.WhichOneof("log_type") != "predict_log":
        raise RowError(f"cannot make rows of a {log.WhichOneof('log_type')}")
    return log.predict_log


def _log_outputs(predict_log) -> Dict[str, np.ndarray]:
    """A one-record PredictLog's outputs, without their batch dimension of 1."""
    import tensorflow as tf
    return {name: tf.make_ndarray(tensor)[0]
            for name, tensor in predict_log.response.outputs.items()}
