"""The engine: RunInference over chunks of records. `models` builds a Beam ModelHandler per
configured model (`handler`: load, run a batch with per-record failure isolation), `routing`
sends each record to its models, and `transforms` holds the Beam transforms that batch and
streaming pipelines share. Imports every layer below it.
"""
