"""template/config.py's settings that the environment changes."""
import pytest
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


def test_pipeline_picks_the_name_and_the_vertex_paths(monkeypatch):
    monkeypatch.setenv("GCS_BUCKET", "b")
    for variable in ("VERTEX_PIPELINE_ROOT", "VERTEX_DATA_PATH", "VERTEX_TEXT_MODEL_URI"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(config, "PIPELINE", "taxi")
    assert config.pipeline_name() == config.PIPELINE_NAME
    monkeypatch.setattr(config, "PIPELINE", "text")
    assert config.pipeline_name() == config.TEXT_PIPELINE_NAME
    assert config.vertex_pipeline_root() == f"gs://b/pipelines/{config.TEXT_PIPELINE_NAME}"
    assert config.vertex_data_path() == f"gs://b/data/{config.TEXT_PIPELINE_NAME}"
    assert config.vertex_text_model_uri() == config.CONTAINER_TEXT_MODEL_DIR
    monkeypatch.setenv("VERTEX_TEXT_MODEL_URI", "/mnt/models/e5")
    assert config.vertex_text_model_uri() == "/mnt/models/e5"


def test_an_unknown_pipeline_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setattr(config, "PIPELINE", "images")
    with pytest.raises(ValueError, match=r"PIPELINE='images': choose one of \('taxi', 'text'\)"):
        config.pipeline_name()
