"""Runs the pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

    python local_runner.py          (what `make run` does)
    tfx pipeline create --engine=local --pipeline_path=local_runner.py

It ends with a summary read back from ML Metadata: every component's state, and per model
the examples inferred, failures, throughput and where the outputs are.
"""
import os

from absl import logging
from tfx import v1 as tfx

import pipeline
from components import run_summary
from template import config


def create_pipeline() -> tfx.dsl.Pipeline:
    return pipeline.create_pipeline(
        pipeline_name=config.PIPELINE_NAME,
        pipeline_root=config.PIPELINE_ROOT,
        data_path=config.DATA_PATH,
        frameworks=config.FRAMEWORKS,
        train_num_steps=config.TRAIN_NUM_STEPS,
        eval_num_steps=config.EVAL_NUM_STEPS,
        inference_splits=config.INFERENCE_SPLITS,
        beam_pipeline_args=config.LOCAL_BEAM_PIPELINE_ARGS,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.METADATA_PATH),
    )


def run():
    os.makedirs(os.path.dirname(config.METADATA_PATH), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(create_pipeline())
    print(run_summary.render(config.METADATA_PATH, config.PIPELINE_NAME))


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    run()
