"""Model outputs as columns: {output name: batch-major array}.

Frameworks return whatever their models return (a tensor, a tuple or dict of tensors, one
object per example from a Beam handler); the engine keeps every output as one array whose
row i belongs to record i. An output whose rows differ in shape (ragged, e.g. entities per
text) is an object array holding each row's own array.
"""
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

Columns = Dict[str, np.ndarray]

# The output name under which a framework's `predict` returns the serialized
# PredictionLogs it builds itself; the engine makes them the result's `prediction_logs`
# (see `inference.data.results.ChunkResult`).
PREDICTION_LOG = "prediction_log"

_PREDICTION_LOG_MODULE = "tensorflow_serving.apis.prediction_log_pb2"


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor (torch, TF, NumPy, Python scalar or list) as a NumPy array."""
    if type(value) is np.ndarray:  # noqa: E721  (the common case, checked first)
        return value
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy"):  # tf.Tensor
        value = value.numpy()
    return np.asarray(value)


def named(value: Any, output_names: Sequence[str] = ()) -> Dict[str, Any]:
    """A model's output (for a batch, or one example's) as {output name: value}.

    Dicts keep their keys; a tuple/list of tensors or a single tensor is named by
    `output_names`, else `output_0`, `output_1`, ... (TensorFlow's default output names).
    """
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (tuple, list)) and value and hasattr(value[0], "shape"):
        values = list(value)
    else:
        values = [value]
    names = list(output_names) or [f"output_{i}" for i in range(len(values))]
    if len(names) != len(values):
        raise ValueError(f"output_names {names} do not match the model's {len(values)} "
                         f"output(s)")
    return dict(zip(names, values))


def from_batch(outputs: Any, batch_size: int, output_names: Sequence[str] = ()) -> Columns:
    """A model's outputs for a whole batch as columns, each with a leading dimension of
    the batch size (raises ValueError otherwise)."""
    columns = {name: to_numpy(value) for name, value in named(outputs, output_names).items()}
    for name, column in columns.items():
        if column.ndim == 0 or len(column) != batch_size:
            shape = column.shape
            raise ValueError(f"output {name!r} has shape {shape}; expected a leading "
                             f"dimension of the batch size, {batch_size}")
    return columns


def from_examples(inferences: Sequence[Any], output_names: Sequence[str] = ()) -> Columns:
    """Per-example outputs (e.g. `PredictionResult.inference` of a Beam handler) as
    columns. tfx_bsl's PredictionLogs become the PREDICTION_LOG column, serialized."""
    if inferences and _is_prediction_log(inferences[0]):
        return {PREDICTION_LOG: objects([log.SerializeToString() for log in inferences])}
    rows = [{name: to_numpy(value) for name, value in named(inference, output_names).items()}
            for inference in inferences]
    return stack(rows)


def stack(rows: Sequence[Mapping[str, np.ndarray]]) -> Columns:
    """Rows ({output: the example's array}) as columns; all rows must name the same
    outputs. Rows of one shape and dtype stack into one array, others into a ragged
    object column."""
    if not rows:
        return {}
    names = list(rows[0])
    for row in rows:
        if list(row) != names:
            raise ValueError(f"examples have different outputs: {names} and {list(row)}")
    return {name: _column([row[name] for row in rows]) for name in names}


def _column(values: List[np.ndarray]) -> np.ndarray:
    first = values[0]
    if all(v.shape == first.shape for v in values):
        if all(v.dtype.kind in "SUO" for v in values):  # strings of any length, objects
            column = np.empty((len(values),) + first.shape, dtype=object)
            for i, value in enumerate(values):
                column[i] = value if value.ndim else value.item()
            return column
        if all(v.dtype == first.dtype for v in values):
            return np.stack(values)
    return objects(values)


def objects(values: Sequence[Any]) -> np.ndarray:
    """A 1-D object column of `values` (arrays of any shape stay whole)."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def rows(columns: Mapping[str, np.ndarray]) -> List[Dict[str, Any]]:
    """Columns as one {output: value} dict per row."""
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def row(columns: Mapping[str, np.ndarray], index: int) -> Dict[str, np.ndarray]:
    """Row `index` of the columns, each value as an array."""
    return {name: np.asarray(column[index]) for name, column in columns.items()}


def _is_prediction_log(value: Any) -> bool:
    """Whether `value` is a tensorflow_serving PredictionLog, without importing it: if the
    module was never imported, no value can be one."""
    import sys
    module = sys.modules.get(_PREDICTION_LOG_MODULE)
    return module is not None and isinstance(value, module.PredictionLog)


def take(outputs: Mapping[str, np.ndarray], rows: Sequence[int]) -> Dict[str, np.ndarray]:
    """The outputs of the given rows."""
    index = np.asarray(rows, dtype=np.int64)
    return {name: column[index] for name, column in outputs.items()}


def concatenate(parts: Sequence[Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Outputs of consecutive row ranges as one; each output must have the same
    per-row shape and dtype in every part (raises ValueError otherwise)."""
    parts = [part for part in parts if part]
    if not parts:
        return {}
    names = list(parts[0])
    for part in parts[1:]:
        if list(part) != names:
            raise ValueError(f"the model's outputs changed between batches: {names} then "
                             f"{list(part)}")
    return {name: np.concatenate([part[name] for part in parts]) for name in names}
