"""Runs the pipeline locally: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

    python local_runner.py          (what `make run` does)

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
CONSOLE = console.start(config.OUTPUT_DIR, config.PIPELINE_NAME) if _AS_SCRIPT else None

# pylint: disable=wrong-import-position
from absl import logging  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

import pipeline  # noqa: E402
from components import run_summary  # noqa: E402


def create_pipeline() -> tfx.dsl.Pipeline:
    return pipeline.create_pipeline(
        pipeline_name=config.PIPELINE_NAME,
        pipeline_root=config.PIPELINE_ROOT,
        data_path=config.DATA_PATH,
        frameworks=config.FRAMEWORKS,
        train_num_steps=config.TRAIN_NUM_STEPS,
        eval_num_steps=config.EVAL_NUM_STEPS,
        inference_splits=config.INFERENCE_SPLITS,
        beam_pipeline_args=config.local_beam_pipeline_args(),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.METADATA_PATH),
    )


def _ran_since(metadata_path: str, pipeline_name: str, started: float) -> bool:
    """True when ML Metadata holds a run of the pipeline that started after `started`.

    False under `tfx pipeline create`, whose patched LocalDagRunner.run runs nothing.
    """
    if not os.path.exists(metadata_path):
        return False
    run = run_summary.latest_run(run_summary.open_store(metadata_path), pipeline_name)
    return run is not None and run.create_time_since_epoch >= int(started * 1000) - 1000


def run():
    os.makedirs(os.path.dirname(config.METADATA_PATH), exist_ok=True)
    out = CONSOLE or console.Console(sys.stdout, None)
    out.watch(config.METADATA_PATH, config.PIPELINE_NAME)
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
        if _ran_since(config.METADATA_PATH, config.PIPELINE_NAME, started):
            out.print("\n" + run_summary.render(config.METADATA_PATH, config.PIPELINE_NAME))
    except Exception as e:  # pylint: disable=broad-except
        # The run itself succeeded; a summary that cannot be read must not fail it.
        logging.warning("Could not read the run summary from %s: %s", config.METADATA_PATH, e)
    if out.log_path:
        out.print(f"Full log: {console.shown(out.log_path)}")


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    run()
