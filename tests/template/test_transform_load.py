"""The engine loads the template's tf.Transform graph with the model that reads its
features: the graph's load is timed apart from the model's, and only when it loads; the
features it makes are tf.Transform's own."""
import joblib
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from sklearn.linear_model import LinearRegression

from inference.config import InputSpec, ModelConfig
from inference.data import decoding
from inference.engine.models import create_handler
from template import features


def test_the_transform_graph_load_is_timed_once_per_graph(transformed, tmp_path):
  names = list(features.MODEL_FEATURES)
  path = str(tmp_path / 'model.joblib')
  joblib.dump(LinearRegression().fit(np.eye(len(names), dtype=np.float32),
                                     np.arange(len(names))), path)
  handler = create_handler(
      ModelConfig(name='m', inputs=InputSpec(features=names),
                  options={'trusted': True}),
      path, transform_output_dir=transformed.transform_output)

  model_seconds, graph_seconds = handler.load_model().take_load_seconds()
  assert model_seconds >= 0 and graph_seconds > 0
  reloaded = handler.load_model()  # e.g. an LRU of models evicted it
  assert reloaded.take_load_seconds()[1] is None  # the same graph, already loaded

  [result] = handler.run_inference([(None, transformed.raw_examples[:5])], reloaded)
  assert result.outputs['output_0'].shape == (5,)


def test_the_transformed_features_are_tf_transforms_own(transformed):
  """The decoder's one traced call (without AutoGraph) makes what tf.Transform's own
  `transform_raw_features` makes, run eagerly on the same records."""
  names = list(features.MODEL_FEATURES)
  records = transformed.raw_examples[:50]
  columns = decoding.TransformDecoder(transformed.transform_output, names)(records)
  output = tft.TFTransformOutput(transformed.transform_output)
  raw = tf.io.parse_example(records, output.raw_feature_spec())
  expected = output.transform_raw_features(raw, drop_unused_features=True)
  assert sorted(columns) == sorted(names)
  for name in names:
    want = expected[name]
    want = want.values if isinstance(want, tf.SparseTensor) else want
    np.testing.assert_array_equal(columns[name].values, want.numpy().ravel())
