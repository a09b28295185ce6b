"""TensorRT: a clear refusal without a GPU; an engine built from ONNX on one."""
import importlib.util

import pytest
import torch

from components.bulk_inferrer import spec
from inference.config import ConfigError, InferenceConfig, InputSpec, ModelConfig
from inference.frameworks import detection
from tests import helpers
from tests.inference.frameworks.common import FEATURES, _assert_equal, _Mlp, _run

# --- TensorRT ----------------------------------------------------------------------------------

_HAS_TENSORRT = (importlib.util.find_spec("tensorrt") is not None
                 and torch.cuda.is_available())


@pytest.mark.skipif(_HAS_TENSORRT, reason="TensorRT and a GPU are present")
def test_tensorrt_without_gpu_says_so(tmp_path, tabular):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    assert detection.resolve(str(engine))[0] == "tensorrt"
    model = ModelConfig(uri=str(engine), inputs=InputSpec(features=FEATURES),
                        max_batch_size=8)
    with pytest.raises(ConfigError, match="TensorRT needs an NVIDIA GPU.*tensorrt"):
        helpers.run_bulk_inferrer(tmp_path, {spec.EXAMPLES_KEY: [tabular.examples]},
                                  InferenceConfig(models=[model]))


@pytest.mark.skipif(not _HAS_TENSORRT, reason="needs an NVIDIA GPU and the tensorrt package")
def test_tensorrt_from_onnx_on_gpu(tmp_path, tmp_path_factory, tabular):
    folder = str(tmp_path_factory.mktemp("tensorrt"))
    path = f"{folder}/mlp.onnx"
    torch.manual_seed(0)
    mlp = _Mlp().eval()
    torch.onnx.export(mlp, (torch.zeros(8, 4),), path, dynamo=False,
                      input_names=["x"], output_names=["logits"])  # a fixed batch of 8
    results = _run(tmp_path, tabular, [ModelConfig(
        name="trt", framework="tensorrt", uri=path, device="GPU", min_batch_size=8,
        max_batch_size=8, inputs=InputSpec(features=FEATURES))])["trt"]
    with torch.no_grad():
        direct = mlp(torch.from_numpy(tabular.x)).numpy()
    _assert_equal(results, {"output_0": direct}, tol=dict(rtol=1e-3, atol=1e-3))
