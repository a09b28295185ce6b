"""PyTorch: TorchScript files, or a state dict with its model class, via Beam's handlers."""
import itertools

import numpy as np
import torch
from apache_beam.ml.inference import pytorch_inference

from inference.config import ModelConfig
from inference.frameworks import FrameworkHandler, import_object


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    options = model.options
    if options.get("model_class"):
        # A state dict: Beam loads it with torch.load (weights only) into model_class(**params).
        location = dict(state_dict_path=path,
                        model_class=import_object(options["model_class"]),
                        model_params=options.get("model_params", {}))
    else:
        location = dict(torch_script_model_path=path)
    if model.inputs.layout == "dict":
        handler = pytorch_inference.PytorchModelHandlerKeyedTensor(
            device=model.device, inference_fn=_numpy_outputs(
                pytorch_inference.default_keyed_tensor_inference_fn), **location)
        return FrameworkHandler(handler, _keyed_rows)
    # Beam's handler loads the model (onto the GPU if asked and usable, else the CPU);
    # `_forward` runs it on the stacked batch, as Beam's default_tensor_inference_fn does
    # after stacking per-row tensors back and before wrapping each output row.
    handler = pytorch_inference.PytorchModelHandlerTensor(device=model.device, **location)
    return FrameworkHandler(handler, None, _forward)


def _forward(module: torch.nn.Module, inputs: np.ndarray, inference_args=None):
    """The module's outputs (in NumPy) for a [batch, ...] array, on the module's device."""
    with torch.no_grad():  # as Beam's inference functions (GPU memory, apache/beam#22811)
        batch = torch.from_numpy(np.ascontiguousarray(inputs)).to(_device(module))
        return _to_numpy(module(batch, **(inference_args or {})))


def _device(module: torch.nn.Module) -> torch.device:
    """Where the module's weights are: where Beam's handler loaded it."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _numpy_outputs(inference_fn):
    """Beam's inference_fn, with the model's outputs as NumPy arrays on the CPU.

    Each record's result is then a row view of one array, as with the other frameworks,
    instead of a tensor per row: cheaper to split, to encode, and to pickle (Beam samples
    element sizes by pickling them).
    """
    def run(batch, model, device, inference_args=None, model_id=None):
        return inference_fn(batch, _NumpyModel(model), device, inference_args, model_id)
    return run


class _NumpyModel:
    """Calls the module; returns its outputs (a tensor, or a dict/tuple of them) in NumPy."""

    def __init__(self, module: torch.nn.Module):
        self._module = module

    def __call__(self, *args, **kwargs):
        return _to_numpy(self._module(*args, **kwargs))


def _to_numpy(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.detach().cpu().numpy()
    if isinstance(outputs, dict):
        return {name: _to_numpy(value) for name, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_numpy(value) for value in outputs)
    return outputs


def _rows(inputs: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(inputs)).unbind(0)


def _keyed_rows(inputs):
    tensors = {name: _rows(array) for name, array in inputs.items()}
    return [dict(zip(tensors, row)) for row in zip(*tensors.values())]
