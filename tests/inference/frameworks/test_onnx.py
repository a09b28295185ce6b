"""ONNX Runtime through the executor: inputs by name, every output kept."""
import os

import numpy as np
import pytest
import torch

from inference.config import ConfigError, InputSpec, ModelConfig
from inference.frameworks import detection, onnx
from tests.inference.frameworks.common import (
    FEATURES,
    _assert_equal,
    _Mlp,
    _ort_run,
    _run,
    _serving,
    _TwoInputs,
)


def test_onnx_from_sklearn(tmp_path, tmp_path_factory, tabular, logistic):
    from skl2onnx import to_onnx
    artifact, folder = _serving(tmp_path_factory, "skl2onnx")
    path = os.path.join(folder, "model.onnx")
    # The default ZipMap output: one {class: probability} map per example.
    with open(path, "wb") as f:
        f.write(to_onnx(logistic, tabular.x[:1]).SerializeToString())
    assert detection.resolve(folder) == ("onnx", path)
    results = _run(tmp_path, tabular, [ModelConfig(inputs=InputSpec(features=FEATURES))],
                   artifact)["model"]

    direct = _ort_run(path, {"X": tabular.x})
    expected = {"output_label": direct["output_label"],
                "output_probability": np.array([list(p.values())
                                                for p in direct["output_probability"]])}
    _assert_equal(results, expected)
    _assert_equal(results, {"output_label": logistic.predict(tabular.x),
                            "output_probability": logistic.predict_proba(tabular.x)},
                  tol=dict(rtol=1e-4, atol=1e-5))

def test_onnx_from_torch_stacked_and_dict(tmp_path, tmp_path_factory, tabular):
    folder = str(tmp_path_factory.mktemp("torch2onnx"))
    torch.manual_seed(0)
    mlp, two = _Mlp().eval(), _TwoInputs().eval()
    stacked_path, dict_path = f"{folder}/mlp.onnx", f"{folder}/two_inputs.onnx"
    # torch 2.14 exports with the dynamo exporter by default, which needs onnxscript;
    # the TorchScript exporter (dynamo=False) does not.
    torch.onnx.export(mlp, (torch.zeros(1, 4),), stacked_path, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    torch.onnx.export(two, (torch.zeros(1, 1), torch.zeros(1, 1)), dict_path, dynamo=False,
                      input_names=["f0", "f2"], output_names=["scores", "total"],
                      dynamic_axes={n: {0: "batch"} for n in ("f0", "f2", "scores", "total")})
    assert detection.resolve(stacked_path)[0] == "onnx"
    results = _run(tmp_path, tabular, [
        ModelConfig(name="stacked", uri=stacked_path, inputs=InputSpec(features=FEATURES),
                    max_batch_size=16,
                    options={"session_options": {"intra_op_num_threads": 1}}),
        ModelConfig(name="dict", uri=dict_path,
                    inputs=InputSpec(features=["f0", "f2"], layout="dict")),
    ])

    x = tabular.x
    _assert_equal(results["stacked"], _ort_run(stacked_path, {"x": x}))
    _assert_equal(results["dict"], _ort_run(dict_path, {"f0": x[:, :1], "f2": x[:, 2:3]}))
    with torch.no_grad():
        scores, total = two(torch.from_numpy(x[:, :1]), torch.from_numpy(x[:, 2:3]))
        _assert_equal(results["stacked"], {"logits": mlp(torch.from_numpy(x)).numpy()})
    _assert_equal(results["dict"], {"scores": scores.numpy(), "total": total.numpy()})


def test_session_options_are_set_by_name(tmp_path):
    path = str(tmp_path / "mlp.onnx")
    torch.onnx.export(_Mlp().eval(), (torch.zeros(1, 4),), path, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    spec = ModelConfig(options={"session_options": {
        "intra_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_BASIC"}})
    onnx.check(path, spec)
    options = onnx.load(path, spec).get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level.name == "ORT_ENABLE_BASIC"


@pytest.mark.parametrize("settings, message", [
    ({"intra_op_threads": 1}, "SessionOptions has no setting 'intra_op_threads'; settings: "),
    ({"graph_optimization_level": "ALL"}, "choose one of .*'ORT_ENABLE_ALL'"),
    ({"graph_optimization_level": 99}, "graph_optimization_level=99: choose one of "),
    ({"intra_op_num_threads": "one"}, "intra_op_num_threads='one': ONNX Runtime takes a "
                                      "count, 0 or more"),
    ({"intra_op_num_threads": True}, "intra_op_num_threads=True: ONNX Runtime takes a count"),
    ({"intra_op_num_threads": -3}, "intra_op_num_threads=-3: ONNX Runtime takes a count"),
    ({"enable_profiling": 0}, "enable_profiling=0: ONNX Runtime takes true or false"),
    (["intra_op_num_threads", 1], "must map ONNX Runtime's SessionOptions settings to values"),
])
def test_a_session_option_onnx_runtime_does_not_have_is_refused_before_the_run(settings,
                                                                                message):
    with pytest.raises(ConfigError, match=message):
        onnx.check("model.onnx", ModelConfig(name="m", options={"session_options": settings}))
