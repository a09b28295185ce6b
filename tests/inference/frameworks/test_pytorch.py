"""PyTorch through the executor: state dicts, TorchScript, variable-length token ids."""

import numpy as np
import torch

from inference.config import InputSpec, ModelConfig
from inference.frameworks import detection
from tests.inference.frameworks.common import (
    FEATURES,
    VOCAB,
    _assert_equal,
    _Mlp,
    _ort_run,
    _padded,
    _run,
    results_of,
)


def test_pytorch_state_dict_and_torchscript_on_the_device_the_weights_are_on(
        tmp_path, tmp_path_factory, tabular):
    """device="GPU": on a GPU the batch goes to the weights there; without one, Beam's
    handler loads the weights onto the CPU and the batch follows them."""
    folder = str(tmp_path_factory.mktemp("torch"))
    torch.manual_seed(0)
    mlp = _Mlp().eval()
    torch.save(mlp.state_dict(), f"{folder}/weights.pt")
    torch.jit.save(torch.jit.script(mlp), f"{folder}/model.pt")
    inputs = InputSpec(features=FEATURES)
    results = _run(tmp_path, tabular, [
        ModelConfig(name="state_dict", uri=f"{folder}/weights.pt", framework="pytorch",
                    inputs=inputs, device="GPU",
                    options={"model_class": f"{__name__}._Mlp"}),
        ModelConfig(name="torchscript", uri=f"{folder}/model.pt", inputs=inputs,
                    device="GPU", max_batch_size=16),
    ])

    with torch.no_grad():
        expected = {"output_0": mlp(torch.from_numpy(tabular.x)).numpy()}
    _assert_equal(results["state_dict"], expected)
    _assert_equal(results["torchscript"], expected)

# --- variable-length token ids: PyTorch and ONNX, padded per batch or to max_length ---------

class _MeanEmbedding(torch.nn.Module):
    """Embedding + mean pooling over the non-padding tokens + a linear head."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(len(VOCAB), 8, padding_idx=0)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, ids):
        mask = (ids != 0).unsqueeze(-1).float()
        pooled = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


def test_variable_length_token_ids(tmp_path, tmp_path_factory, tokens):
    folder = str(tmp_path_factory.mktemp("varlen"))
    torch.manual_seed(0)
    eager = _MeanEmbedding().eval()
    module = torch.jit.script(eager)
    torch.jit.save(module, f"{folder}/model.pt")
    torch.onnx.export(eager, (torch.ones(2, 5, dtype=torch.int64),), f"{folder}/model.onnx",
                      dynamo=False, input_names=["ids"], output_names=["logits"],
                      dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch"}})
    assert detection.resolve(f"{folder}/model.pt")[0] == "pytorch"
    longest = InputSpec(features=["input_ids"], dtype="int64", padding="longest")
    max_length = InputSpec(features=["input_ids"], dtype="int64", padding="max_length",
                           max_length=6)
    models = [ModelConfig(name=f"{runtime}_{name}", uri=f"{folder}/model.{suffix}",
                          inputs=spec_, max_batch_size=8)
              for runtime, suffix in (("torch", "pt"), ("onnx", "onnx"))
              for name, spec_ in (("longest", longest), ("max_length", max_length))]
    results = _run(tmp_path, tokens, models)

    padded, cut = _padded(tokens.ids), _padded(tokens.ids, 6, truncate=True)
    assert padded.shape[1] > 6
    with torch.no_grad():
        _assert_equal(results["torch_longest"],
                      {"output_0": module(torch.from_numpy(padded)).numpy()})
        _assert_equal(results["torch_max_length"],
                      {"output_0": module(torch.from_numpy(cut)).numpy()})
    _assert_equal(results["onnx_longest"], _ort_run(f"{folder}/model.onnx", {"ids": padded}))
    _assert_equal(results["onnx_max_length"], _ort_run(f"{folder}/model.onnx", {"ids": cut}))
    _assert_equal(results["onnx_longest"], {"logits": results_of(results["torch_longest"])})


class _PaddedWidth(torch.nn.Module):
    """Outputs the width its batch was padded to, for every record."""

    def forward(self, ids):
        return torch.full((ids.shape[0], 1), float(ids.shape[1]))


def test_length_buckets_pad_each_bucket_to_its_own_longest(tmp_path, tmp_path_factory,
                                                          tokens):
    folder = str(tmp_path_factory.mktemp("buckets"))
    torch.jit.save(torch.jit.script(_PaddedWidth()), f"{folder}/model.pt")
    common = dict(uri=f"{folder}/model.pt", min_batch_size=40, max_batch_size=40,
                  inputs=InputSpec(features=["input_ids"], dtype="int64", padding="longest"))
    results = _run(tmp_path, tokens, [
        ModelConfig(name="bucketed", length_feature="input_ids", length_buckets=[4, 8],
                    **common),
        ModelConfig(name="one_batch", **common)])

    lengths = np.array([len(seq) for seq in tokens.ids])
    buckets = np.digitize(lengths, [4, 8])  # bisect_right, as the handler buckets
    assert len(set(buckets)) == 3
    widths = results_of(results["bucketed"]).reshape(-1)
    for bucket in range(3):  # all 40 records are one batch: each bucket padded on its own
        in_bucket = buckets == bucket
        assert (widths[in_bucket] == lengths[in_bucket].max()).all(), bucket
    assert (results_of(results["one_batch"]) == lengths.max()).all()
