"""Fixtures: a small Transform output and transformed examples from the CSV.

The first rows of `template/data/taxi/data.csv` go through the template's
`preprocessing_fn` with tf.Transform on Beam, giving what the TFX Transform
component hands the Trainer: a transform graph directory and gzipped TFRecords
of transformed tf.Examples, one directory per split.
"""

import csv
import os
import types

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.runners.portability.fn_api_runner import fn_runner
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from template import preprocessing

DATA_CSV = os.path.join(
    os.path.dirname(__file__), '..', '..', 'template', 'data', 'taxi', 'data.csv')
NUM_TRAIN = 800
NUM_EVAL = 200


def _dtype(values):
  """Infers a column's type from its present values, like CsvExampleGen."""
  for dtype, parse in ((tf.int64, int), (tf.float32, float)):
    try:
      for value in values:
        parse(value)
      return dtype
    except ValueError:
      pass
  return tf.string


def _read_rows(n):
  """Returns the first `n` CSV rows (as strings, '' = missing) and their types."""
  with open(DATA_CSV, newline='') as f:
    rows = [row for _, row in zip(range(n), csv.DictReader(f))]
  dtypes = {
      key: _dtype([row[key] for row in rows if row[key]]) for key in rows[0]
  }
  return rows, dtypes


def _instance(row, dtypes):
  """Converts a CSV row into a tf.Transform instance dict of 0/1-value lists."""
  casts = {tf.int64: int, tf.float32: float, tf.string: str.encode}
  return {
      key: [casts[dtypes[key]](value)] if value else []
      for key, value in row.items()
  }


def _big_tipper(row):
  """The label, computed from a raw CSV row without tf.Transform."""
  fare_cents = round(100 * float(row['fare'] or 0))
  tips_cents = round(100 * float(row['tips'] or 0))
  return int(fare_cents > 0 and 5 * tips_cents > fare_cents)


def _serialize(instance, dtypes):
  """Serializes a tf.Transform instance dict as a raw tf.Example."""
  feature = {}
  for key, values in instance.items():
    if dtypes[key] == tf.int64:
      feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    elif dtypes[key] == tf.float32:
      feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    else:
      feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


@pytest.fixture(scope='session')
def transformed(tmp_path_factory):
  """Runs tf.Transform over the first CSV rows; returns where it wrote.

  Returns a namespace with `transform_output` (the TFTransformOutput
  directory), `train_files` / `eval_files` (lists of glob patterns like
  `FnArgs`'), `raw_examples` (serialized raw tf.Examples of the training rows),
  `raw_labels` (their big-tipper labels) and `num_train` / `num_eval`.
  """
  root = tmp_path_factory.mktemp('transform')
  rows, dtypes = _read_rows(NUM_TRAIN + NUM_EVAL)
  instances = [_instance(row, dtypes) for row in rows]
  raw_metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec(
          {key: tf.io.VarLenFeature(dtype) for key, dtype in dtypes.items()}))

  transform_output = str(root / 'transform_graph')
  # The raw schema, for the serving signature, as the Transform component does.
  metadata_io.write_metadata(
      raw_metadata,
      os.path.join(transform_output, tft.TFTransformOutput.RAW_METADATA_DIR))
  # FnApiRunner directly: DirectRunner would first try to download Prism.
  with beam.Pipeline(runner=fn_runner.FnApiRunner()) as pipeline:
    with tft_beam.Context(temp_dir=str(root / 'tmp')):
      train = pipeline | 'Train' >> beam.Create(instances[:NUM_TRAIN])
      evaluation = pipeline | 'Eval' >> beam.Create(instances[NUM_TRAIN:])
      (transformed_train, transformed_metadata), transform_fn = (
          (train, raw_metadata)
          | tft_beam.AnalyzeAndTransformDataset(
              preprocessing.preprocessing_fn, output_record_batches=False))
      transformed_eval, _ = (((evaluation, raw_metadata), transform_fn)
                             | tft_beam.TransformDataset())
      _ = transform_fn | tft_beam.WriteTransformFn(transform_output)
      coder = tft.coders.ExampleProtoCoder(transformed_metadata.schema)
      for split, data in (('train', transformed_train),
                          ('eval', transformed_eval)):
        _ = (
            data
            | f'Encode{split}' >> beam.Map(coder.encode)
            | f'Write{split}' >> beam.io.WriteToTFRecord(
                str(root / f'Split-{split}' / 'transformed_examples'),
                file_name_suffix='.gz'))

  return types.SimpleNamespace(
      transform_output=transform_output,
      train_files=[str(root / 'Split-train' / '*')],
      eval_files=[str(root / 'Split-eval' / '*')],
      raw_examples=[_serialize(i, dtypes) for i in instances[:NUM_TRAIN]],
      raw_labels=np.array([_big_tipper(row) for row in rows[:NUM_TRAIN]]),
      num_train=NUM_TRAIN,
      num_eval=NUM_EVAL)
