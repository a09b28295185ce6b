"""Runs the pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

    python local_runner.py                  (what `make run` does: the taxi pipeline)
    PIPELINE=text python local_runner.py    (`make run-text`: text embeddings, no training)

or with the TFX CLI (which loads this file as `__main__` with `LocalDagRunner.run` patched
to record the pipeline, then runs it with `python local_runner.py`):

    tfx pipeline create --engine=local --pipeline_path=local_runner.py
    tfx run create --engine=local --pipeline_name=taxi-bulk-inference

It prints a line as each component starts and ends, the BulkInferrers' progress on long
runs, and ends with a summary read back from ML Metadata: every component's state, and per
model the examples inferred, failures, throughput, where the outputs and the run report
are. The full logs go to outputs/logs/ (FULL_LOGS=1 keeps them on the console). The
summary is only printed for a run this process made, so `tfx pipeline create` prints none.
"""
import os
import sys
import time

from components import console
from template import config

# Run as a script (`make run`, `tfx run create`), not read in by `tfx pipeline create`
# (which executes this file inside the CLI's own process): the full logs go to a file from
# here on, before TensorFlow's import writes its own.
_AS_SCRIPT = __name__ == "__main__" and vars(sys.modules["__main__"]) is globals()
CONSOLE = console.start(config.OUTPUT_DIR, config.pipeline_name()) if _AS_SCRIPT else None

from absl import logging  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

import pipeline  # noqa: E402
from components import run_summary  # noqa: E402


def create_pipeline() -> tfx.dsl.Pipeline:
    """The pipeline PIPELINE picks, as it runs here."""
    name = config.pipeline_name()
    where = dict(pipeline_name=name,
                 pipeline_root=config.pipeline_root(name),
                 beam_pipeline_args=config.local_beam_pipeline_args(),
                 metadata_connection_config=tfx.orchestration.metadata
                 .sqlite_metadata_connection_config(config.metadata_path(name)))
    if config.PIPELINE == "text":
        return pipeline.create_text_pipeline(
            data_path=config.TEXT_DATA_PATH, model_uri=config.text_model_uri(),
            bigquery_table=config.TEXT_BIGQUERY_TABLE, **where)
    return pipeline.create_pipeline(
        data_path=config.DATA_PATH,
        frameworks=config.FRAMEWORKS,
        train_num_steps=config.TRAIN_NUM_STEPS,
        eval_num_steps=config.EVAL_NUM_STEPS,
        inference_splits=config.INFERENCE_SPLITS, **where)


def _ran_since(metadata_path: str, pipeline_name: str, started: float) -> bool:
    """True when ML Metadata holds a run of the pipeline that started after `started`.

    False under `tfx pipeline create`, whose patched LocalDagRunner.run runs nothing.
    """
    if not os.path.exists(metadata_path):
        return False
    run = run_summary.latest_run(run_summary.open_store(metadata_path), pipeline_name)
    return run is not None and run.create_time_since_epoch >= int(started * 1000) - 1000


def run():
    name = config.pipeline_name()
    metadata_path = config.metadata_path(name)
    os.makedirs(os.path.dirname(metadata_path), exist_ok=True)
    out = CONSOLE or console.Console(sys.stdout, None)
    out.watch(metadata_path, name)
    started = time.time()
    try:
        # Exactly one LocalDagRunner().run(...) call: the TFX CLI requires it.
        tfx.orchestration.LocalDagRunner().run(create_pipeline())
    except Exception as e:
        out.print(f"\nThe run FAILED: {type(e).__name__}: {e}")
        if out.log_path:
            out.print(f"Full log: {console.shown(out.log_path)}")
        raise
    try:
        if _ran_since(metadata_path, name, started):
            out.print("\n" + run_summary.render(metadata_path, name))
    except Exception as e:
        # The run itself succeeded; a summary that cannot be read must not fail it.
        logging.warning("Could not read the run summary from %s: %s", metadata_path, e)
    if out.log_path:
        out.print(f"Full log: {console.shown(out.log_path)}")


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    run()
