"""The record and what is made of it, with no Beam pipeline in sight.

Serialized tf.Examples (`examples`) travel in chunks whose size `batching` sets; `decoding`
turns a batch into the model's inputs (`images` for image bytes), `columns` and `results`
hold what a model returned for a chunk, `labels` names classes, and `failures` is the dead
letter a record becomes when it cannot be scored. Imports only `inference.config`.
"""
