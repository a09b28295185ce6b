"""One decoding path: a batch of serialized tf.Examples -> columns -> one model's inputs.

Decoding is done once per batch by tfx_bsl's C++ `ExamplesToRecordBatchDecoder` (records
to an Arrow RecordBatch); columns become NumPy arrays without per-record Python work. A big
batch is decoded in slices, side by side on a few threads: tfx_bsl releases the GIL while
it parses, so the slices use the worker's other cores.
`InputMapping` then shapes the columns into what one model takes: a stacked array or a
dict of named arrays, with variable-length features padded so batches always stack.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders import example_coder, sequence_example_coder

from inference.config import InputSpec
from inference.data import images

ModelInputs = Union[np.ndarray, Dict[str, np.ndarray]]


class InputError(ValueError):
    """Records whose features do not fit the model's input mapping.

    rows: the batch positions of the bad records (all of them when None).
    reasons: {batch position: why}, for bad records that each have a reason of their own.
    """

    def __init__(self, message: str, rows: Optional[np.ndarray] = None,
                 reasons: Optional[Dict[int, str]] = None):
        super().__init__(message)
        self.rows = rows
        self.reasons = reasons or {}

    def for_row(self, row: int) -> "InputError":
        """The error as record `row` of the batch has it: with its own reason, if any."""
        reason = self.reasons.get(int(row))
        return InputError(f"{self}: {reason}") if reason else self


class Column(NamedTuple):
    """One feature over a batch: the flat values and each record's value count.

    missing[i] is True when record i does not have the feature at all (as opposed to an
    empty value list).
    """
    values: np.ndarray
    lengths: np.ndarray
    missing: np.ndarray


Columns = Dict[str, Column]


def column_from_arrow(array: pa.Array) -> Column:
    """A tfx_bsl list column (one value list per record) as a Column, without copies."""
    offsets = np.asarray(array.offsets)
    values = array.flatten()
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        values = np.asarray(values.to_pylist(), dtype=object)
    else:
        values = values.to_numpy(zero_copy_only=False)
    missing = (np.asarray(array.is_null()) if array.null_count
               else np.zeros(len(array), dtype=bool))
    return Column(values, np.diff(offsets), missing)


def column_from_dense(array: np.ndarray) -> Column:
    """A dense [batch, ...] array (e.g. a Transform output) as a Column."""
    array = np.asarray(array)
    batch = array.shape[0]
    width = int(np.prod(array.shape[1:], dtype=np.int64)) if array.ndim > 1 else 1
    return Column(array.reshape(-1), np.full(batch, width, dtype=np.int64),
                  np.zeros(batch, dtype=bool))


def take(columns: Columns, rows: np.ndarray) -> Columns:
    """The columns of the batch positions `rows`, in that order (vectorized, no copies of
    the records)."""
    taken = {}
    for name, column in columns.items():
        lengths = column.lengths[rows]
        starts = (np.cumsum(column.lengths) - column.lengths)[rows]
        # Value k of the result belongs to taken row j: its index is starts[j] + k minus
        # the number of values of the taken rows before j.
        index = (np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
                 + np.arange(int(lengths.sum())))
        taken[name] = Column(column.values[index], lengths, column.missing[rows])
    return taken


def projected_schema(schema: Optional[schema_pb2.Schema],
                     features: Sequence[str]) -> Optional[schema_pb2.Schema]:
    """The schema restricted to `features`, so the decoder skips every other feature."""
    if schema is None or not features:
        return schema
    wanted = set(features)
    projected = schema_pb2.Schema()
    projected.CopyFrom(schema)
    del projected.feature[:]
    projected.feature.extend(f for f in schema.feature if f.name in wanted)
    projected.ClearField("sparse_feature")
    projected.ClearField("tensor_representation_group")
    return projected


# tfx_bsl's decoder costs more per record on big batches: measured here, 3.3 us per record
# in slices of 1024 records against 3.8 us for whole batches of 4096 and 4.5 us of 10,000
# (its buffers outgrow the CPU caches). Bigger batches are decoded in slices, then joined.
DECODE_SLICE = 1024
# Threads a process decodes slices on. Each has its own tfx_bsl decoder: one built with a
# schema keeps its column builders between calls, so it is not thread-safe.
DECODE_THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else os.cpu_count() or 1)


def _new_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")


_pool = _new_pool()


def _forget_pool():
    """A forked child has none of its parent's threads: it starts a pool of its own."""
    global _pool
    _pool = _new_pool()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_pool)


def concatenate(parts: Sequence[Columns], sizes: Sequence[int]) -> Columns:
    """The Columns of consecutive slices of a batch (of `sizes` records) as the batch's:
    a feature a slice does not have is missing in that slice's records. Raises
    ValueError for a feature whose values have different types in different slices, as
    the decoder does within one batch."""
    joined = {}
    for name in dict.fromkeys(name for part in parts for name in part):
        columns = [part.get(name) for part in parts]
        values = [c.values for c in columns if c is not None and len(c.values)]
        if len({v.dtype.kind for v in values}) > 1:
            raise ValueError(f"feature {name!r} holds values of different types in one "
                             f"batch: {sorted({str(v.dtype) for v in values})}")
        empty = next(c.values for c in columns if c is not None)
        joined[name] = Column(
            np.concatenate(values) if values else empty,
            np.concatenate([c.lengths if c is not None else np.zeros(n, np.int64)
                            for c, n in zip(columns, sizes)]),
            np.concatenate([c.missing if c is not None else np.ones(n, bool)
                            for c, n in zip(columns, sizes)]))
    return joined


class ExampleDecoder:
    """Decodes batches of serialized tf.Examples into Columns, schema-driven when given one."""

    def __init__(self, schema: Optional[schema_pb2.Schema] = None,
                 features: Sequence[str] = ()):
        schema = projected_schema(schema, features)
        self._serialized_schema = schema.SerializeToString() if schema is not None else None
        self._decoders = threading.local()

    def _new_decoder(self):
        return example_coder.ExamplesToRecordBatchDecoder(self._serialized_schema)

    def load(self):
        """The calling thread's tfx_bsl decoder, built on its first use (not at
        construction: it does not pickle)."""
        decoder = getattr(self._decoders, "decoder", None)
        if decoder is None:
            decoder = self._decoders.decoder = self._new_decoder()
        return decoder

    def __call__(self, records: Sequence[bytes]) -> Columns:
        records = list(records)
        if len(records) <= DECODE_SLICE:
            return self._decode(records)
        slices = [records[start:start + DECODE_SLICE]
                  for start in range(0, len(records), DECODE_SLICE)]
        return concatenate(list(_pool.map(self._decode, slices)), [len(p) for p in slices])

    def _decode(self, records: List[bytes]) -> Columns:
        batch = self.load().DecodeBatch(records)
        return {name: column_from_arrow(batch.column(i))
                for i, name in enumerate(batch.schema.names)}

    def __getstate__(self):
        return {"_serialized_schema": self._serialized_schema}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._decoders = threading.local()


# The column (and schema STRUCT feature, as TFX's SchemaGen names it) holding a
# SequenceExample's feature lists.
SEQUENCE_COLUMN = "##SEQUENCE##"


class SequenceExampleDecoder(ExampleDecoder):
    """Decodes batches of serialized tf.SequenceExamples into Columns of their context
    features, as ExampleDecoder decodes a tf.Example's features (tfx_bsl's C++ decoder).

    Feature lists are not decoded: a model reads context features only (the BulkInferrer
    refuses a model whose inputs name a feature list before any work starts).
    """

    def _new_decoder(self):
        return sequence_example_coder.SequenceExamplesToRecordBatchDecoder(
            SEQUENCE_COLUMN, self._serialized_schema or b"")

    def _decode(self, records: List[bytes]) -> Columns:
        batch = self.load().DecodeBatch(records)
        return {name: column_from_arrow(batch.column(i))
                for i, name in enumerate(batch.schema.names) if name != SEQUENCE_COLUMN}


class InputMapping:
    """Shapes decoded columns into one model's inputs, as its InputSpec says.

    Raises InputError naming the bad rows (missing feature, wrong value count, wrong type,
    NaN/inf) so that only those records fail.
    """

    def __init__(self, spec: InputSpec):
        self.spec = spec
        self._dtype = object if spec.dtype == "bytes" else np.dtype(spec.dtype)

    def __call__(self, columns: Columns) -> ModelInputs:
        arrays = {name: self._dense(name, columns) for name in self.spec.features}
        if self.spec.layout == "dict":
            return arrays
        if len(arrays) == 1:
            return next(iter(arrays.values()))
        return np.concatenate(list(arrays.values()), axis=1)

    def _dense(self, name: str, columns: Columns) -> np.ndarray:
        column = columns.get(name)
        if column is None:
            raise InputError(f"feature {name!r} is missing in every record of the batch "
                             f"(features present: {sorted(columns)}); check the model's "
                             f"inputs.features")
        _check_rows(column.missing, f"feature {name!r} is missing")
        if self.spec.image is not None:
            return self._images(name, column)
        if self.spec.padding == "none":
            _check_rows(column.lengths != self.spec.width,
                        f"feature {name!r} must hold exactly {self.spec.width} value(s)",
                        lambda: _padding_hint(column.lengths, self.spec.width))
        values = column.values
        if self._dtype is not object:
            if values.dtype == object:
                raise InputError(f"feature {name!r} holds bytes; the model wants "
                                 f"{self.spec.dtype}")
            values = values.astype(self._dtype, copy=False)
            if not self.spec.allow_non_finite and values.dtype.kind == "f":
                finite = np.isfinite(values)
                if not finite.all():
                    owner = np.repeat(np.arange(len(column.lengths)), column.lengths)
                    _check_rows(np.isin(np.arange(len(column.lengths)), owner[~finite]),
                                f"feature {name!r} holds NaN or infinite values")
        return pad(values, column.lengths, self.spec)

    def _images(self, name: str, column: Column) -> np.ndarray:
        _check_rows(column.lengths != 1, f"feature {name!r} must hold exactly one image "
                                         f"(the bytes of one image file)")
        if column.values.dtype != object:
            raise InputError(f"feature {name!r} holds numbers; an image feature holds the "
                             f"bytes of an image file")
        pixels, errors = images.decode(column.values, self.spec.image)
        if errors:
            raise InputError(f"feature {name!r} is not an image Pillow can decode",
                             np.array(sorted(errors)), errors)
        return images.normalise(pixels, self.spec.image, self.spec.dtype)


def _check_rows(bad: np.ndarray, problem: str, hint: Callable[[], str] = str):
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(f"{problem} (in {len(rows)} of {len(bad)} records){hint()}", rows)


def _padding_hint(lengths: np.ndarray, width: int) -> str:
    """How to take value counts other than `width`: padding for variable lengths, the
    width for a fixed one."""
    present = lengths[lengths > 0]
    if len(present) and (present == present[0]).all() and present[0] != width:
        return (f"; every record that has it holds {present[0]}: set "
                f"inputs.width={present[0]}")
    return ("; for variable-length features (token ids, ...) set inputs.padding='longest' "
            "(pad each batch to its longest) or padding='max_length' with max_length")


def pad(values: np.ndarray, lengths: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Flat values + per-record lengths -> [batch, width], padded/truncated as configured."""
    batch = len(lengths)
    longest = int(lengths.max()) if batch else 0
    width = {"none": spec.width, "max_length": spec.max_length}.get(spec.padding, longest)
    if batch and (lengths == width).all():
        return values.reshape(batch, width)
    out = np.full((batch, max(longest, width)), spec.pad_value,
                  dtype=values.dtype if values.dtype != object else object)
    out[np.arange(out.shape[1]) < lengths[:, None]] = values
    return out[:, :width]


class TransformDecoder:
    """Decodes raw serialized tf.Examples and applies a tf.Transform graph, per batch.

    Scores raw data with exactly the training transform: the records are parsed with the
    transform's raw feature spec and go through `TFTransformOutput.transform_raw_features`
    in one traced TensorFlow call per batch. Columns are the transformed features.
    """

    def __init__(self, transform_output_dir: str, features: Sequence[str] = ()):
        self._dir = transform_output_dir
        self._features = list(features)
        self._fn = None

    def _build(self):
        import tensorflow as tf
        import tensorflow_transform as tft

        output = tft.TFTransformOutput(self._dir)
        spec = output.raw_feature_spec()
        wanted = self._features

        # No AutoGraph: this function has no Python control flow to convert, and AutoGraph
        # would convert tf.Transform's and Keras' own Python code under it, call by call:
        # seconds per worker, against milliseconds to trace without it.
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
        def transform(records):
            raw = tf.io.parse_example(records, spec)
            transformed = output.transform_raw_features(raw, drop_unused_features=True)
            return {k: v for k, v in transformed.items() if not wanted or k in wanted}

        return transform

    @property
    def loaded(self) -> bool:
        return self._fn is not None

    def load(self):
        """Loads the transform graph and traces the call: seconds, so the model handler
        does it with the model rather than in the first batch (and its timeout)."""
        if self._fn is None:
            self._fn = self._build()
            self._fn.get_concrete_function()

    def __call__(self, records: Sequence[bytes]) -> Columns:
        self.load()
        columns = {}
        for name, tensor in self._fn(list(records)).items():
            if hasattr(tensor, "indices"):  # SparseTensor: values and per-row counts
                rows = tensor.indices.numpy()[:, 0]
                lengths = np.bincount(rows, minlength=int(tensor.dense_shape[0]))
                columns[name] = Column(tensor.values.numpy(), lengths,
                                       np.zeros(len(lengths), dtype=bool))
            else:
                columns[name] = column_from_dense(tensor.numpy())
        return columns

    def __getstate__(self):
        return {"_dir": self._dir, "_features": self._features, "_fn": None}
