"""Trains a Keras MLP on the transformed features; saves a TF SavedModel.

The SavedModel's `serving_default` signature takes `examples`, a 1-D string
tensor of serialized raw tf.Examples, applies the Transform graph and returns
`{'outputs': float32 big-tipper probabilities of shape [batch, 1]}`, the
predict signature TFX's BulkInferrer expects.

The model is built with `tf_keras` (Keras 2), the Keras that tf.Transform's
`transform_features_layer()` belongs to.
"""

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx import v1 as tfx

from template import features
from template.trainers import data

_DEFAULTS = {
    'epochs': 10,
    'batch_size': 256,
    'hidden_units': 64,
    'learning_rate': 1e-3,
    'seed': 0,
}


def _build_keras_model(x_train, hidden_units: int,
                       learning_rate: float) -> tf_keras.Model:
  """Returns a compiled MLP over the [batch, len(MODEL_FEATURES)] matrix."""
  normalization = tf_keras.layers.Normalization()
  normalization.adapt(x_train)
  inputs = tf_keras.Input(shape=(len(features.MODEL_FEATURES),),
                          dtype=tf.float32)
  hidden = tf_keras.layers.Dense(
      hidden_units, activation='relu')(normalization(inputs))
  outputs = tf_keras.layers.Dense(1, activation='sigmoid')(hidden)
  model = tf_keras.Model(inputs, outputs)
  model.compile(
      optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate),
      loss='binary_crossentropy',
      metrics=[tf_keras.metrics.BinaryAccuracy()])
  return model


def _get_tf_examples_serving_signature(model, tf_transform_output):
  """Returns a serving signature that accepts serialized raw tf.Examples."""
  # Tracked as an attribute of the model so that it is saved with it.
  model.tft_layer = tf_transform_output.transform_features_layer()

  @tf.function(input_signature=[
      tf.TensorSpec(shape=[None], dtype=tf.string, name='examples')
  ])
  def serve_tf_examples_fn(serialized_tf_examples):
    """Returns the big-tipper probabilities of the examples."""
    raw_feature_spec = tf_transform_output.raw_feature_spec()
    # The label is not present at serving time.
    raw_feature_spec.pop(features.LABEL_KEY)
    raw_features = tf.io.parse_example(serialized_tf_examples,
                                       raw_feature_spec)
    transformed_features = model.tft_layer(raw_features)
    return {'outputs': model(data.stack_features(transformed_features))}

  return serve_tf_examples_fn


def run_fn(fn_args: tfx.components.FnArgs):
  """Trains the model and saves it as a SavedModel in `serving_model_dir`."""
  config = data.hyperparameters(fn_args, _DEFAULTS)
  tf_keras.utils.set_random_seed(config['seed'])
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  x_train, y_train = data.load_transformed(fn_args.train_files,
                                           tf_transform_output)
  x_eval, y_eval = data.load_transformed(fn_args.eval_files,
                                         tf_transform_output)

  model = _build_keras_model(x_train, config['hidden_units'],
                             config['learning_rate'])
  model.fit(
      x_train,
      y_train,
      batch_size=config['batch_size'],
      epochs=config['epochs'],
      validation_data=(x_eval, y_eval),
      verbose=2)

  data.log_metrics('keras eval', y_eval, model.predict(x_eval, verbose=0))
  signatures = {
      'serving_default':
          _get_tf_examples_serving_signature(model, tf_transform_output),
  }
  tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures)
