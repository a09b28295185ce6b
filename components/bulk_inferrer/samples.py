"""Bounded samples of a BulkInferrer run, as the run report and notebook views read them.

The run report reads the sample the pipeline took as it ran (`inference.io.sampling`: each
model's `size` records whose input hashes lowest, so a shadow run's models keep the same
records and their predictions pair up). Notebook views of any InferenceResult, TFX's own
BulkInferrer's included, read a few records back from its PredictionLogs
(`read_predictions`, up to `scan_limit` records, spread evenly over the files).
"""
import collections
import dataclasses
import heapq
from typing import Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import prediction_log_pb2

from inference.data.columns import PREDICTION_LOG
from inference.data.failures import Failure
from inference.io import sampling, tfrecord

SCAN_LIMIT = 1000


@dataclasses.dataclass
class Prediction:
    """One sampled record: its split, input (a serialized tf.Example) and outputs, each
    a 1-D array of the record's values (a classification's top label and its score)."""
    split: str
    request: bytes
    outputs: Dict[str, np.ndarray]


@dataclasses.dataclass
class ModelSample:
    scanned: int  # records read from the model's logs
    predictions: Dict[int, Prediction]  # input hash -> the record's prediction


def from_run(path: str, predictions: int) -> ModelSample:
    """A model's sample as the pipeline took it (`inference.io.sampling`), with its count of
    `predictions`."""
    taken = {}
    for sample in sampling.read_samples(path):
        values = dict(sample.outputs)
        logs = values.pop(PREDICTION_LOG, None)  # a TensorFlow model's own PredictionLog
        if logs is not None and len(logs):
            values = outputs(prediction_log_pb2.PredictionLog.FromString(logs[0]))
        taken[sample.hash] = Prediction(sample.split, sample.record, values)
    return ModelSample(predictions, taken)


def read_predictions(files: Sequence[str], size: int = sampling.SAMPLE_SIZE,
                     scan_limit: int = SCAN_LIMIT, split: str = "") -> ModelSample:
    """The bottom-`size` sample of one model's PredictionLogs.

    split: the records' split, when known: TFX's layout writes every split's logs in one
    file set, so only a run of one split knows it (see `only_split`)."""
    heap: List[Tuple[int, bytes]] = []  # (-hash, log): the largest on top
    scanned = 0
    for _, raw in _spread(files, scan_limit):
        scanned += 1
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        request = request_example(log)
        entry = (-sampling.record_hash(request), raw)
        if len(heap) < size:
            heapq.heappush(heap, entry)
        elif entry > heap[0]:
            heapq.heapreplace(heap, entry)
    predictions = {}
    for negative_hash, raw in heap:
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        predictions[-negative_hash] = Prediction(split, request_example(log), outputs(log))
    return ModelSample(scanned, predictions)


def read_failures(files: Sequence[str], per_group: int = 3,
                  scan_limit: int = SCAN_LIMIT) -> Dict[Tuple[str, str], List[Failure]]:
    """Up to `per_group` dead letters per (stage, model), from the first `scan_limit`."""
    samples: Dict[Tuple[str, str], List[Failure]] = collections.defaultdict(list)
    for _, raw in _spread(files, scan_limit):
        failure = Failure.from_example(raw)
        group = samples[(failure.stage, failure.model)]
        if len(group) < per_group:
            group.append(failure)
    return dict(samples)


def _spread(files: Sequence[str], limit: int) -> Iterator[Tuple[str, bytes]]:
    """(file, record) for up to `limit` records, an equal share from each file."""
    files = sorted(files)
    share = -(-limit // len(files)) if files else 0
    for path in files:
        taken = 0
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            for records in tfrecord.read_records(raw):
                for record in records[:share - taken]:
                    yield path, record
                taken += min(len(records), share - taken)
                if taken >= share:
                    break


def request_example(log: prediction_log_pb2.PredictionLog) -> bytes:
    """The serialized input example a PredictionLog holds (b"" when it holds none)."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        for tensor in log.predict_log.request.inputs.values():
            if tensor.string_val:
                return tensor.string_val[0]
        return b""
    request = getattr(log, kind).request if kind else None
    examples = request.input.example_list.examples if request is not None else []
    return examples[0].SerializeToString() if examples else b""


def outputs(log: prediction_log_pb2.PredictionLog) -> Dict[str, np.ndarray]:
    """The record's outputs by name, each flattened to 1-D."""
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        return {name: _flat(tensor)
                for name, tensor in sorted(log.predict_log.response.outputs.items())}
    if kind == "classify_log":
        classes = log.classify_log.response.result.classifications[0].classes
        top = max(classes, key=lambda c: c.score)
        return {"class": np.array([top.label]), "score": np.array([top.score])}
    if kind == "regress_log":
        return {"value": np.array([log.regress_log.response.result.regressions[0].value])}
    return {}


# A numeric TensorProto's values field, by dtype: read without `tf.make_ndarray`, whose
# per-call work is most of reading a sample of small outputs (one per record).
_VALUES = {types_pb2.DT_FLOAT: ("float_val", np.float32),
           types_pb2.DT_DOUBLE: ("double_val", np.float64),
           types_pb2.DT_INT32: ("int_val", np.int32),
           types_pb2.DT_INT64: ("int64_val", np.int64)}


def _flat(tensor) -> np.ndarray:
    """A TensorProto's values, flattened: `tf.make_ndarray(tensor).reshape(-1)`."""
    known = _VALUES.get(tensor.dtype)
    if known is None:
        return tf.make_ndarray(tensor).reshape(-1)
    field, dtype = known
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype)
    size = 1
    for dim in tensor.tensor_shape.dim:
        size *= dim.size
    values = np.asarray(getattr(tensor, field), dtype)
    if len(values) == size:
        return values
    return tf.make_ndarray(tensor).reshape(-1)  # a repeated last value fills the shape


def only_split(examples_in: Mapping[str, int]) -> str:
    """The run's split when it read one (its records' split), else ""."""
    return next(iter(examples_in)) if len(examples_in) == 1 else ""
