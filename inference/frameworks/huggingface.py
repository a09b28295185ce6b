"""Hugging Face transformers models in a local (or mounted) folder, via Beam's handlers.

With options.task (e.g. "text-classification"): Beam's HuggingFacePipelineModelHandler;
  each example is the text of its one bytes feature (InputSpec(dtype="bytes")), or with a
  dict layout a {feature: text} dict (e.g. question / context for question-answering).
  options.pipeline_args: more `transformers.pipeline(...)` keyword arguments.
Without a task: the model class options.model_class (default
  "transformers.AutoModel") loaded with from_pretrained and run by Beam's PyTorch
  handlers on int64 token tensors: a dict layout (HuggingFaceModelHandlerKeyedTensor)
  passes each feature as the keyword argument of its name (input_ids, attention_mask, ...);
  a stacked layout (HuggingFaceModelHandlerTensor) passes the one tensor positionally.
  Padding comes from the InputSpec. options.load_model_args: from_pretrained kwargs.
"""
import numpy as np
from apache_beam.ml.inference import huggingface_inference

from inference.config import ConfigError, ModelConfig
from inference.frameworks import FrameworkHandler, import_object
# The same per-example torch tensors as the PyTorch framework feeds its handlers.
from inference.frameworks.pytorch import _keyed_rows, _rows

DEFAULT_MODEL_CLASS = "transformers.AutoModel"


def build(model: ModelConfig, path: str) -> FrameworkHandler:
    options = model.options
    if options.get("task"):
        return _pipeline(model, path)
    model_class = import_object(options.get("model_class") or DEFAULT_MODEL_CLASS)
    location = dict(model_uri=path, model_class=model_class, device=model.device,
                    load_model_args=options.get("load_model_args"))
    if model.inputs.layout == "dict":
        handler = huggingface_inference.HuggingFaceModelHandlerKeyedTensor(
            framework="pt", **location)
        return FrameworkHandler(handler, _keyed_rows)
    handler = huggingface_inference.HuggingFaceModelHandlerTensor(**location)
    return FrameworkHandler(handler, _rows)


def _pipeline(model: ModelConfig, path: str) -> FrameworkHandler:
    spec = model.inputs
    if spec.dtype != "bytes" or (spec.layout == "stacked" and len(spec.features) != 1):
        raise ConfigError(f"model {model.name!r}: a transformers pipeline takes text: give "
                          f"inputs=InputSpec(features=[<one bytes feature>], dtype='bytes'), "
                          f"or a dict layout of bytes features")
    handler = huggingface_inference.HuggingFacePipelineModelHandler(
        task=model.options["task"], model=path, device=model.device,
        load_pipeline_args=dict(model.options.get("pipeline_args") or {}))
    return FrameworkHandler(handler, _texts)


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
