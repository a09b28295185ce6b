"""Hugging Face transformers models in a local (or mounted) folder.

With options.task (e.g. "text-classification"): Beam's HuggingFacePipelineModelHandler
  (through `BeamHandler`); each example is the text of its one bytes feature
  (InputSpec(dtype="bytes")), or with a dict layout a {feature: text} dict (e.g. question /
  context for question-answering). options.pipeline_args: more `transformers.pipeline(...)`
  keyword arguments.
Without a task: the model class options.model_class (default "transformers.AutoModel")
  loaded with from_pretrained and run on the batch's int64 token tensors: a dict layout
  passes each feature as the keyword argument of its name (input_ids, attention_mask, ...),
  a stacked layout the one tensor positionally. Padding comes from the InputSpec.
  options.load_model_args: from_pretrained keyword arguments.
Weights load from safetensors files; pickle-based weights (`.bin`) need `trusted`.
"""
import numpy as np
import torch

from inference import columns
from inference.config import ConfigError, ModelConfig
from inference.frameworks import BeamHandler, import_object

DEFAULT_MODEL_CLASS = "transformers.AutoModel"


def check(path: str, spec: ModelConfig):
    if spec.options.get("task"):
        inputs = spec.inputs
        if inputs.dtype != "bytes" or (inputs.layout == "stacked"
                                       and len(inputs.features) != 1):
            raise ConfigError(
                f"model {spec.name!r}: a transformers pipeline takes text: give "
                f"inputs=InputSpec(features=[<one bytes feature>], dtype='bytes'), or a "
                f"dict layout of bytes features")
    else:
        import_object(spec.options.get("model_class") or DEFAULT_MODEL_CLASS,
                      "options.model_class")


def load(path: str, spec: ModelConfig):
    options = spec.options
    if options.get("task"):
        from apache_beam.ml.inference import huggingface_inference  # pylint: disable=import-outside-toplevel
        return BeamHandler.load(huggingface_inference.HuggingFacePipelineModelHandler(
            task=options["task"], model=path, device=spec.device,
            load_pipeline_args=dict(options.get("pipeline_args") or {})))
    model_class = import_object(options.get("model_class") or DEFAULT_MODEL_CLASS,
                                "options.model_class")
    model = model_class.from_pretrained(path, **dict(options.get("load_model_args") or {}))
    device = "cuda" if spec.device == "GPU" and torch.cuda.is_available() else "cpu"
    return model.to(device).eval()


def predict(model, inputs, spec: ModelConfig):
    if isinstance(model, BeamHandler):
        return model.predict(_texts(inputs), spec.output_names)
    device = next(model.parameters()).device
    with torch.no_grad():
        if isinstance(inputs, dict):
            size = len(next(iter(inputs.values())))
            outputs = model(**{name: torch.from_numpy(np.ascontiguousarray(array)).to(device)
                               for name, array in inputs.items()})
        else:
            size = len(inputs)
            outputs = model(torch.from_numpy(np.ascontiguousarray(inputs)).to(device))
    return columns.from_batch({name: value.detach().cpu().numpy()
                               for name, value in outputs.items()
                               if isinstance(value, torch.Tensor)}, size)


def _texts(inputs):
    """Bytes features as str: one text per example, or a {feature: text} dict per example."""
    if isinstance(inputs, dict):
        texts = {name: [_text(row) for row in array] for name, array in inputs.items()}
        return [dict(zip(texts, row)) for row in zip(*texts.values())]
    return [_text(row) for row in inputs]


def _text(row: np.ndarray) -> str:
    if len(row) != 1:
        raise ValueError(f"a pipeline example takes one text per feature, got {len(row)} "
                         f"values")
    value = row[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
