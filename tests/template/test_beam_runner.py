"""template/beam_runner.py: the local runs' runner."""
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.options.value_provider import RuntimeValueProvider
from apache_beam.runners.runner import create_runner
from apache_beam.testing.util import assert_that, equal_to

from template import beam_runner, config


def test_the_local_run_names_the_local_runner():
    options = PipelineOptions(config.LOCAL_BEAM_PIPELINE_ARGS)
    assert options.view_as(StandardOptions).runner == beam_runner.NAME
    assert isinstance(create_runner(beam_runner.NAME), beam_runner.LocalRunner)


def test_worker_processes_get_the_pipelines_options():
    """What a named FnApiRunner does not do: its worker processes get no options."""
    args = [f"--runner={beam_runner.NAME}", "--direct_running_mode=multi_processing",
            "--direct_num_workers=1", "--job_name=probe-job"]
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        # The option's value as the worker process has it (None when it got no options).
        names = (pipeline | beam.Create(["job_name"])
                 | beam.Map(RuntimeValueProvider.get_value, str, None))
        assert_that(names, equal_to(["probe-job"]))
