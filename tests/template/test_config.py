"""template/config.py's settings that the environment changes."""
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from template import config


def test_local_beam_args_take_extra_flags_from_the_environment(monkeypatch):
    monkeypatch.delenv("LOCAL_BEAM_EXTRA_ARGS", raising=False)
    assert config.local_beam_pipeline_args() == config.LOCAL_BEAM_PIPELINE_ARGS
    monkeypatch.setenv("LOCAL_BEAM_EXTRA_ARGS",
                       "--direct_num_workers=2 --direct_running_mode=multi_processing")

    options = PipelineOptions(config.local_beam_pipeline_args()).view_as(DirectOptions)

    # The extra flags come last, and Beam takes a repeated flag's last value.
    assert options.direct_num_workers == 2
    assert options.direct_running_mode == "multi_processing"
