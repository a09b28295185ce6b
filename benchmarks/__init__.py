"""`make bench`: throughput of the inference core against its limits and its alternatives.

One run (`python -m benchmarks.run`) writes N taxi-shaped tf.Examples as gzipped TFRecords,
builds one MLP in four frameworks (PyTorch, TensorFlow SavedModel parsing tf.Examples,
scikit-learn, ONNX; same weights), then measures on those same records, each case in a
fresh process (peak RSS per case):

  raw          tfx_bsl batch decode + forward in a plain Python loop (the limit), and the
               same plus PredictionLog encoding (per record as tfx_bsl does, or ours);
  plain_beam   the pipeline a user writes by hand: ReadFromTFRecord, parse each tf.Example
               in a beam.Map, RunInference with Beam's framework handler, WriteToText;
  tfx          TFX's own BulkInferrer executor on the SavedModel;
  ours         this project's BulkInferrer executor, every framework.

See `python -m benchmarks.run --help` and the report written to outputs/bench/<timestamp>/.
"""
