"""Helpers shared by the trainers: hyperparameters, inputs and evaluation."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from sklearn import metrics
from tfx import v1 as tfx

from template import features


def hyperparameters(fn_args: tfx.components.FnArgs, defaults: Dict[str, Any]) -> Dict[str, Any]:
    """Returns `defaults` overridden by the Trainer's `custom_config`."""
    return {**defaults, **(fn_args.custom_config or {})}


def stack_features(transformed) -> tf.Tensor:
    """Stacks the transformed `MODEL_FEATURES` into a float32 [batch, n] matrix."""
    return tf.stack([transformed[key] for key in features.MODEL_FEATURES], axis=1)


def load_transformed(
    file_pattern: List[str],
    tf_transform_output: tft.TFTransformOutput,
    max_rows: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Reads transformed examples into a feature matrix and a label vector.

    Args:
      file_pattern: Glob patterns of gzipped TFRecord files of transformed
        tf.Examples, e.g. `fn_args.train_files`.
      tf_transform_output: The `TFTransformOutput` that wrote them.
      max_rows: If set, read at most this many examples.

    Returns:
      `(X, y)`: X float32 of shape [n, len(MODEL_FEATURES)], column i being
      `MODEL_FEATURES[i]`; y int64 of shape [n], the big-tipper label.
    """
    files = sorted(path for pattern in file_pattern for path in tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"No files match {file_pattern}")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if max_rows is not None:
        dataset = dataset.take(max_rows)
    feature_spec = tf_transform_output.transformed_feature_spec()
    xs, ys = [], []
    for batch in dataset.batch(4096):
        parsed = tf.io.parse_example(batch, feature_spec)
        xs.append(stack_features(parsed).numpy())
        ys.append(parsed[features.TRANSFORMED_LABEL_KEY].numpy())
    if not xs:
        raise ValueError(f"No examples in {files}")
    return np.concatenate(xs), np.concatenate(ys)


def load_train_eval(fn_args: tfx.components.FnArgs):
    """The Trainer's transformed examples as (x_train, y_train, x_eval, y_eval)."""
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    return (
        *load_transformed(fn_args.train_files, tf_transform_output),
        *load_transformed(fn_args.eval_files, tf_transform_output),
    )


def log_metrics(name: str, y: np.ndarray, probabilities: np.ndarray) -> None:
    """Logs the accuracy and AUC of predicted big-tipper probabilities."""
    probabilities = np.asarray(probabilities).reshape(-1)
    accuracy = metrics.accuracy_score(y, probabilities > 0.5)
    auc = metrics.roc_auc_score(y, probabilities) if len(np.unique(y)) == 2 else float("nan")
    logging.info("%s: accuracy=%.4f auc=%.4f on %d examples", name, accuracy, auc, len(y))
