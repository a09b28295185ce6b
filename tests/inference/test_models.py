"""From a configuration to handlers: what cannot run is refused before Beam starts, with a
message saying what to change."""
import pytest
import torch

from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.engine.models import create_handler, create_handlers


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("m") / "model.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), path)
    return path


def test_handlers_are_built_per_model_with_the_framework_detected(script):
    config = InferenceConfig(models=[ModelConfig(name=n, inputs=InputSpec(features=["a", "b"]))
                                     for n in ("x", "y")])
    handlers = create_handlers(config, {"x": script, "y": script})
    assert {name: h.spec.framework for name, h in handlers.items()} == {"x": "pytorch",
                                                                        "y": "pytorch"}
    assert handlers["x"].spec.uri == script


def test_what_cannot_run_is_refused_where_the_pipeline_is_built(tmp_path, script):
    with pytest.raises(ConfigError, match="has no uri"):
        create_handlers(InferenceConfig())
    with pytest.raises(ConfigError, match="needs inputs.features"):
        create_handler(ModelConfig(name="m"), script)
    with pytest.raises(ConfigError, match="model not found"):
        create_handler(ModelConfig(name="m"), str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match=r"preprocess_fn='no.such.module.fn'"):
        create_handler(ModelConfig(name="m", inputs=InputSpec(features=["a"]),
                                   preprocess_fn="no.such.module.fn"), script)
    module = tmp_path / "broken.py"
    module.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match=r"postprocess_fn=.*broken.py:fn.*failed to run: "
                                          r"RuntimeError: boom"):
        create_handler(ModelConfig(name="m", inputs=InputSpec(features=["a"]),
                                   postprocess_fn=f"{module}:fn"), script)
    saved = tmp_path / "sm"
    import tensorflow as tf
    tf.saved_model.save(tf.Module(), str(saved))
    with pytest.raises(ConfigError, match="length bucketing"):
        create_handler(ModelConfig(name="m", framework="tensorflow", length_feature="a",
                                   inputs=InputSpec(features=["a"])), str(saved))
