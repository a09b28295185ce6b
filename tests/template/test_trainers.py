"""Tests of the template's preprocessing and trainers on a slice of the CSV."""

import os

import joblib
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import torch
import xgboost
from sklearn import metrics
from tfx import v1 as tfx

from template import features, preprocessing
from template.trainers import data, keras_trainer, sklearn_trainer, torch_trainer, xgboost_trainer

# A model that learnt nothing neither ranks well nor beats the log loss of
# always predicting the base rate (a random MLP can reach an AUC of 0.85).
MIN_AUC = 0.75
MAX_LOG_LOSS_VS_BASE_RATE = 0.8


@pytest.fixture(scope='module')
def train_xy(transformed):
  return data.load_transformed(
      transformed.train_files,
      tft.TFTransformOutput(transformed.transform_output))


def _fn_args(transformed, tmp_path, **custom_config):
  return tfx.components.FnArgs(
      train_files=transformed.train_files,
      eval_files=transformed.eval_files,
      transform_output=transformed.transform_output,
      serving_model_dir=str(tmp_path / 'serving_model'),
      custom_config=custom_config)


def _check_probabilities(probabilities, y):
  assert probabilities.shape == (len(y), 1)
  assert np.all((probabilities >= 0) & (probabilities <= 1))
  assert metrics.roc_auc_score(y, probabilities[:, 0]) > MIN_AUC
  base_rate_log_loss = metrics.log_loss(y, np.full(len(y), y.mean()))
  assert (metrics.log_loss(y, probabilities[:, 0]) <
          MAX_LOG_LOSS_VS_BASE_RATE * base_rate_log_loss)


def test_fill_in_missing_densifies_sparse_and_dense_inputs():
  sparse = tf.SparseTensor(
      indices=[[0, 0], [2, 0]], values=[1.5, 2.5], dense_shape=[3, 1])
  np.testing.assert_array_equal(
      preprocessing._fill_in_missing(sparse, -1.0), [1.5, -1.0, 2.5])
  np.testing.assert_array_equal(
      preprocessing._fill_in_missing(tf.constant([[b'a'], [b'b']]), b''),
      [b'a', b'b'])


def test_transformed_features_are_float32_scalars(transformed):
  spec = tft.TFTransformOutput(
      transformed.transform_output).transformed_feature_spec()
  for key in features.MODEL_FEATURES:
    assert spec[key] == tf.io.FixedLenFeature([], tf.float32), key
  assert spec[features.TRANSFORMED_LABEL_KEY] == tf.io.FixedLenFeature(
      [], tf.int64)


def test_load_transformed(transformed, train_xy):
  x, y = train_xy
  assert x.shape == (transformed.num_train, len(features.MODEL_FEATURES))
  assert x.dtype == np.float32
  # Beam need not keep the row order, so compare the label counts.
  assert np.bincount(y).tolist() == np.bincount(
      transformed.raw_labels).tolist()
  x_head, y_head = data.load_transformed(
      transformed.train_files,
      tft.TFTransformOutput(transformed.transform_output),
      max_rows=10)
  np.testing.assert_array_equal(x_head, x[:10])
  np.testing.assert_array_equal(y_head, y[:10])


def test_torch_trainer(transformed, train_xy, tmp_path):
  fn_args = _fn_args(transformed, tmp_path, epochs=20, learning_rate=0.01)
  torch_trainer.run_fn(fn_args)

  model = torch.jit.load(
      os.path.join(fn_args.serving_model_dir, torch_trainer.MODEL_FILE))
  x, y = train_xy
  with torch.no_grad():
    probabilities = model(torch.from_numpy(x)).numpy()
  _check_probabilities(probabilities, y)


def test_sklearn_trainer(transformed, train_xy, tmp_path):
  fn_args = _fn_args(transformed, tmp_path)
  sklearn_trainer.run_fn(fn_args)

  model = joblib.load(
      os.path.join(fn_args.serving_model_dir, sklearn_trainer.MODEL_FILE))
  x, y = train_xy
  _check_probabilities(model.predict_proba(x)[:, 1:], y)


def test_xgboost_trainer(transformed, train_xy, tmp_path):
  fn_args = _fn_args(transformed, tmp_path, n_estimators=20)
  xgboost_trainer.run_fn(fn_args)

  model = xgboost.XGBClassifier()
  model.load_model(
      os.path.join(fn_args.serving_model_dir, xgboost_trainer.MODEL_FILE))
  x, y = train_xy
  _check_probabilities(model.predict_proba(x)[:, 1:], y)


@pytest.fixture(scope='module')
def keras_model_dir(transformed, tmp_path_factory):
  fn_args = _fn_args(transformed, tmp_path_factory.mktemp('keras'), epochs=20,
                     learning_rate=0.01)
  keras_trainer.run_fn(fn_args)
  return fn_args.serving_model_dir


def test_keras_trainer_serves_raw_examples(transformed, keras_model_dir):
  serving = tf.saved_model.load(keras_model_dir).signatures['serving_default']
  assert list(serving.structured_input_signature[1]) == ['examples']
  outputs = serving(examples=tf.constant(transformed.raw_examples))
  assert list(outputs) == ['outputs']
  assert outputs['outputs'].dtype == tf.float32
  _check_probabilities(outputs['outputs'].numpy(), transformed.raw_labels)


def test_keras_model_loads_in_tf1_session_like_bulk_inferrer(
    transformed, keras_model_dir):
  # tfx_bsl's in-process inference loads the SavedModel this way.
  with tf.compat.v1.Graph().as_default(), tf.compat.v1.Session() as session:
    signature = tf.compat.v1.saved_model.load(
        session, ['serve'], keras_model_dir).signature_def['serving_default']
    assert signature.method_name == 'tensorflow/serving/predict'
    probabilities = session.run(
        signature.outputs['outputs'].name,
        {signature.inputs['examples'].name: transformed.raw_examples})
  _check_probabilities(probabilities, transformed.raw_labels)
