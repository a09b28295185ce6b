"""PyTorch: TorchScript files, or a state dict with its model class, via Beam's handlers."""
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
        handler = pytorch_inference.PytorchModelHandlerKeyedTensor(device=model.device,
                                                                   **location)
        return FrameworkHandler(handler, _keyed_rows)
    handler = pytorch_inference.PytorchModelHandlerTensor(device=model.device, **location)
    return FrameworkHandler(handler, _rows)


def _rows(inputs: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(inputs)).unbind(0)


def _keyed_rows(inputs):
    tensors = {name: _rows(array) for name, array in inputs.items()}
    return [dict(zip(tensors, row)) for row in zip(*tensors.values())]
