"""PyTorch: TorchScript files, or a state dict with its model class, loaded by Beam's handler.

options:
  model_class: for a state dict, the import path of the nn.Module class (code, trusted as
    configuration); model_params: its constructor's keyword arguments.
A stacked layout passes the batch as one tensor, a dict layout each feature as the keyword
argument of its name. The batch goes to the device the weights are on (Beam's handler puts
them on the GPU when asked for and usable, else on the CPU).
"""
import itertools
import pickle

import numpy as np
import torch
from apache_beam.ml.inference import pytorch_inference

from inference.config import ModelConfig
from inference.data import columns
from inference.frameworks import Framework, file_head, import_object, trust


def _is_archive(path: str) -> bool:
    """torch.save and torch.jit.save write zip archives, whatever the file's name."""
    return file_head(path, 4) == b"PK\x03\x04"


# State dicts load with torch.load(weights_only=True) unless the model is trusted, and
# TorchScript with torch.jit.load: neither unpickles arbitrary objects.
FRAMEWORK = Framework(suffixes=(".pt", ".pth", ".torchscript"), sniff=_is_archive,
                      safe_content=(trust.PICKLE_ARCHIVE,))


def check(path: str, spec: ModelConfig):
    if spec.options.get("model_class"):
        import_object(spec.options["model_class"], "options.model_class")


def load(path: str, spec: ModelConfig) -> torch.nn.Module:
    options = spec.options
    if options.get("model_class"):
        location = dict(state_dict_path=path,
                        model_class=import_object(options["model_class"],
                                                  "options.model_class"),
                        model_params=options.get("model_params", {}),
                        load_model_args={"weights_only": not trust.trusted(spec)})
    else:
        location = dict(torch_script_model_path=path)
    try:
        return pytorch_inference.PytorchModelHandlerTensor(device=spec.device,
                                                           **location).load_model()
    except pickle.UnpicklingError:  # the weights-only loader met something else
        trust.require(spec, path, "holds Python objects besides tensors, which torch's "
                                  "weights-only loader refuses and a full torch.load "
                                  "unpickles")
        raise


def predict(module: torch.nn.Module, inputs, spec: ModelConfig):
    device = _device(module)
    with torch.no_grad():  # as Beam's inference functions (GPU memory, apache/beam#22811)
        if isinstance(inputs, dict):
            size = len(next(iter(inputs.values())))
            outputs = module(**{name: _tensor(array, device) for name, array in inputs.items()})
        else:
            size = len(inputs)
            outputs = module(_tensor(inputs, device))
    return columns.from_batch(_to_numpy(outputs), size, spec.output_names)


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _device(module: torch.nn.Module) -> torch.device:
    """Where the module's weights are: where Beam's handler loaded it."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _to_numpy(outputs):
    if isinstance(outputs, torch.Tensor):
        return outputs.detach().cpu().numpy()
    if isinstance(outputs, dict):
        return {name: _to_numpy(value) for name, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_to_numpy(value) for value in outputs)
    return outputs
