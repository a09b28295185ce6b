"""The tf.Transform `preprocessing_fn` for the taxi "big tipper" task.

Every feature in `features.MODEL_FEATURES` comes out as a dense float32 tensor
of shape [batch]; the label `features.TRANSFORMED_LABEL_KEY` as int64 [batch].
"""

import tensorflow as tf
import tensorflow_transform as tft

from template import features


def _fill_in_missing(x, default_value):
    """Returns `x` as a dense rank-1 tensor, missing values set to the default.

    Args:
      x: A `SparseTensor` of dense shape [batch, 1] (an optional feature) or a
        dense tensor of shape [batch, 1] or [batch] (a required one).
      default_value: The value of rows where `x` is missing.
    """
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value
        )
    return tf.reshape(x, [-1])


def _to_float(x):
    """Casts the values of a dense or sparse tensor to float32."""
    if isinstance(x, tf.sparse.SparseTensor):
        return tf.SparseTensor(x.indices, tf.cast(x.values, tf.float32), x.dense_shape)
    return tf.cast(x, tf.float32)


def preprocessing_fn(inputs):
    """tf.transform's callback function for preprocessing inputs.

    Args:
      inputs: Map from raw feature keys to raw not-yet-transformed features.

    Returns:
      Map from transformed feature keys to transformed features.
    """
    outputs = {}
    for key in features.DENSE_FLOAT_FEATURE_KEYS:
        # Statistics come from the present values; a missing value becomes 0, the
        # mean.
        outputs[features.transformed_name(key)] = _fill_in_missing(
            tft.scale_to_z_score(_to_float(inputs[key])), 0.0
        )

    for key in features.BUCKET_FEATURE_KEYS:
        buckets = tft.bucketize(_to_float(inputs[key]), features.BUCKET_FEATURE_BUCKET_COUNT)
        outputs[features.transformed_name(key)] = tf.cast(_fill_in_missing(buckets, -1), tf.float32)

    for key in features.CATEGORICAL_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = _fill_in_missing(_to_float(inputs[key]), 0.0)

    for key in features.VOCAB_FEATURE_KEYS:
        ids = tft.compute_and_apply_vocabulary(
            _fill_in_missing(inputs[key], ""),
            top_k=features.VOCAB_SIZE,
            num_oov_buckets=features.OOV_SIZE,
        )
        outputs[features.transformed_name(key)] = tf.cast(ids, tf.float32)

    # A big tipper tips more than 20% of the fare; no fare means no big tipper.
    # Compared in whole cents, so float32 rounding cannot decide a tip of exactly
    # 20%.
    fare = tf.round(100.0 * _fill_in_missing(_to_float(inputs[features.FARE_KEY]), 0.0))
    tips = tf.round(100.0 * _fill_in_missing(_to_float(inputs[features.LABEL_KEY]), 0.0))
    outputs[features.TRANSFORMED_LABEL_KEY] = tf.cast(
        tf.logical_and(fare > 0.0, 5.0 * tips > fare), tf.int64
    )
    return outputs
