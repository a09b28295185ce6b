"""The local runs' Beam runner (`config.LOCAL_BEAM_PIPELINE_ARGS` names it).

Beam's DirectRunner runs a batch pipeline on Beam's FnApiRunner, in this process or in
worker processes (`--direct_running_mode`), but first tries the Prism runner, which it
downloads from GitHub at run time (offline, it gives up after a fraction of a second).
Naming the FnApiRunner itself skips that, but its worker processes then start without the
pipeline's options. `LocalRunner` does what the DirectRunner does once it has given up on
Prism, and only that.
"""

from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineRunner

NAME = f"{__name__}.LocalRunner"  # what --runner takes


class LocalRunner(PipelineRunner):
    """Runs a batch pipeline on Beam's FnApiRunner, with the pipeline's options handed to
    its workers (file systems, pickler, log levels), as the DirectRunner does."""

    def run_pipeline(self, pipeline, options):
        provision = beam_provision_api_pb2.ProvisionInfo(
            pipeline_options=JobServiceHandle.encode_pipeline_options(options.get_all_options())
        )
        runner = fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(provision))
        return runner.run_pipeline(pipeline, options)
