"""No task: the model class options.model_class (default "transformers.AutoModel") loaded
with from_pretrained and run on the batch's int64 token tensors: a dict layout passes each
feature as the keyword argument of its name (input_ids, attention_mask, ...), a stacked
layout the one tensor positionally. Padding comes from the InputSpec;
options.load_model_args: from_pretrained keyword arguments."""
import numpy as np
import torch

from inference.config import ModelConfig
from inference.data import columns
from inference.frameworks import import_object
from inference.frameworks.huggingface import common

DEFAULT_MODEL_CLASS = "transformers.AutoModel"


def check(path: str, spec: ModelConfig):
    _model_class(spec)


def load(path: str, spec: ModelConfig):
    model = _model_class(spec).from_pretrained(path, **common.load_args(spec))
    return model.to(common.device(spec)).eval()


def predict(model, inputs, spec: ModelConfig):
    device = next(model.parameters()).device
    with torch.no_grad():
        if isinstance(inputs, dict):
            size = len(next(iter(inputs.values())))
            outputs = model(**{name: _tensor(array, device) for name, array in inputs.items()})
        else:
            size = len(inputs)
            outputs = model(_tensor(inputs, device))
    return columns.from_batch({name: value.detach().cpu().numpy()
                               for name, value in outputs.items()
                               if isinstance(value, torch.Tensor)}, size)


def _model_class(spec: ModelConfig):
    return import_object(spec.options.get("model_class") or DEFAULT_MODEL_CLASS,
                         "options.model_class")


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)
