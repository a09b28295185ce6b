"""Sources, sinks and encodings: TFRecord files in chunks (`records`, over the tolerant
codec `tfrecord`), image files (`image_files`), dead letters (`dead_letters`), results as
PredictionLogs or tf.Examples (`encoding`) and as rows (`rows`), file sets numbered across
a run (`publish`), and the run's sample for the report (`sampling`). Imports `data`,
`observe` and `config`.
"""
