"""Trains a Keras MLP on the transformed features; saves a TF SavedModel.

The SavedModel's `serving_default` signature takes `examples`, a 1-D string
tensor of serialized raw tf.Examples, applies the Transform graph and returns
`{'outputs': float32 big-tipper probabilities of shape [batch, 1]}`: the
predict signature that TFX's BulkInferrer (tfx_bsl, which loads SavedModels in
a TF1 session) expects.

The model is Keras 3 (`keras`, TensorFlow backend), exported with
`keras.export.ExportArchive`, which saves the variables in a form the TF1
loader restores (a plain `tf.saved_model.save` of a Keras 3 model does not).
`tf_keras` would also do, but AutoGraph converts all of `tf_keras` when it
traces the training step, adding ~15 s per process.
"""

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from template import features
from template.trainers import data

_DEFAULTS = {
    "epochs": 10,
    "batch_size": 256,
    "hidden_units": 64,
    "learning_rate": 1e-3,
    "seed": 0,
}


def _build_keras_model(x_train, hidden_units: int, learning_rate: float) -> keras.Model:
    """Returns a compiled MLP over the [batch, len(MODEL_FEATURES)] matrix."""
    inputs = keras.Input(shape=(len(features.MODEL_FEATURES),), dtype="float32")
    normalized = keras.layers.Normalization(
        mean=x_train.mean(axis=0), variance=x_train.var(axis=0)
    )(inputs)
    hidden = keras.layers.Dense(hidden_units, activation="relu")(normalized)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy()],
        jit_compile=False,
    )
    return model


def _export(model, tf_transform_output, export_dir: str) -> None:
    """Exports the model behind a signature that takes serialized tf.Examples."""
    tft_layer = tf_transform_output.transform_features_layer()
    raw_feature_spec = tf_transform_output.raw_feature_spec()
    # The label is not present at serving time.
    raw_feature_spec.pop(features.LABEL_KEY)

    def serve_tf_examples_fn(serialized_tf_examples):
        """Returns the big-tipper probabilities of the examples."""
        raw_features = tf.io.parse_example(serialized_tf_examples, raw_feature_spec)
        transformed_features = tft_layer(raw_features)
        return {"outputs": model(data.stack_features(transformed_features))}

    archive = keras.export.ExportArchive()
    archive.track(model)
    # Tracks the Transform graph's lookup tables and vocabulary assets.
    archive.track(tft_layer)
    archive.add_endpoint(
        name="serving_default",
        fn=serve_tf_examples_fn,
        input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")],
    )
    archive.write_out(export_dir, verbose=False)


def run_fn(fn_args: tfx.components.FnArgs):
    """Trains the model and saves it as a SavedModel in `serving_model_dir`."""
    config = data.hyperparameters(fn_args, _DEFAULTS)
    keras.utils.set_random_seed(config["seed"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    x_train, y_train, x_eval, y_eval = data.load_train_eval(fn_args)

    model = _build_keras_model(x_train, config["hidden_units"], config["learning_rate"])
    model.fit(x_train, y_train, batch_size=config["batch_size"], epochs=config["epochs"], verbose=2)

    data.log_metrics("keras eval", y_eval, model.predict(x_eval, verbose=0))
    _export(model, tf_transform_output, fn_args.serving_model_dir)
