"""The inference engine: a multi-framework RunInference core for serialized tf.Examples.

Plain Beam, no TFX orchestration imports: usable from a TFX executor, a batch Beam pipeline
or a streaming one. The record's path: serialized records -> `RunInference` batches ->
one decode per batch (`decoding`) -> the framework's Beam handler (`frameworks`) ->
`PredictionResult(record, inference, model_id)` -> encoders (`encoding`).
"""
