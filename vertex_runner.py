"""Compiles the pipeline for Vertex AI Pipelines: a pipeline JSON, nothing is submitted.

    python vertex_runner.py
        -> $VERTEX_PIPELINE_FILE (default outputs/vertex/<pipeline>_pipeline.json)
    PIPELINE=text python vertex_runner.py    (the text embeddings pipeline)
    tfx pipeline create --engine=vertex --pipeline_path=vertex_runner.py
        -> $VERTEX_HOME/<pipeline>/pipeline.json (VERTEX_HOME defaults to ~/tfx/vertex)
    tfx run create --engine=vertex --pipeline_name=<pipeline> --project=P --region=R
        submits that JSON to Vertex AI.

The same `pipeline.create_pipeline(...)` (or `create_text_pipeline(...)`) as the local
run, with every component running in the image built from ./Dockerfile and every
Beam-based component on Dataflow; with DATAFLOW_GPU_TYPE set, the BulkInferrers' Dataflow
jobs also get GPU workers. Names, image, bucket and Dataflow settings come from
template/config.py (environment variables override them).
Compiling needs no Google Cloud access.
"""
import os

from absl import logging
from tfx import v1 as tfx

import pipeline
from components import BulkInferrer
from template import config


def create_pipeline() -> tfx.dsl.Pipeline:
    """The pipeline PIPELINE picks, as Vertex AI runs it: data and root on GCS, Beam on
    Dataflow."""
    where = dict(pipeline_name=config.pipeline_name(),
                 pipeline_root=config.vertex_pipeline_root(),
                 data_path=config.vertex_data_path(),
                 beam_pipeline_args=config.dataflow_beam_pipeline_args(),
                 metadata_connection_config=None,  # Vertex AI keeps ML Metadata itself
                 # TFX 1.16 compiles no resolver function for Vertex AI (README: Drift).
                 previous_run_baseline=False)
    if config.PIPELINE == "text":
        tfx_pipeline = pipeline.create_text_pipeline(
            model_uri=config.vertex_text_model_uri(),
            bigquery_table=config.TEXT_BIGQUERY_TABLE, **where)
    else:
        tfx_pipeline = pipeline.create_pipeline(
            frameworks=config.FRAMEWORKS,
            train_num_steps=config.TRAIN_NUM_STEPS,
            eval_num_steps=config.EVAL_NUM_STEPS,
            inference_splits=config.INFERENCE_SPLITS, **where)
    gpu_args = config.dataflow_gpu_args()
    if gpu_args:
        # Component-level args come after the pipeline-level ones, so they win: only the
        # inference jobs get GPU workers.
        for component in tfx_pipeline.components:
            if isinstance(component, BulkInferrer):
                component.with_beam_pipeline_args(gpu_args)
    return tfx_pipeline


def runner() -> "tfx.orchestration.experimental.KubeflowV2DagRunner":
    output_file = config.vertex_pipeline_file()
    directory = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(directory, exist_ok=True)
    return tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=config.pipeline_image()),
        output_dir=directory,
        output_filename=os.path.basename(output_file))


def run():
    # Exactly one KubeflowV2DagRunner.run(...) call: the TFX CLI requires it.
    runner().run(create_pipeline())
    logging.info("Pipeline %r compiled for Vertex AI Pipelines.", config.pipeline_name())


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    run()
