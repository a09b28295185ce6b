"""Any other task (e.g. "question-answering"): Beam's HuggingFacePipelineModelHandler
(through `BeamHandler`), one example per text, or per {feature: text} dict with a dict
layout; options.pipeline_args: more `transformers.pipeline(...)` keyword arguments."""
from inference.config import ModelConfig
from inference.frameworks import BeamHandler
from inference.frameworks.huggingface import common


def load(path: str, spec: ModelConfig) -> BeamHandler:
    from apache_beam.ml.inference import huggingface_inference
    return BeamHandler.load(huggingface_inference.HuggingFacePipelineModelHandler(
        task=spec.options["task"], model=path, device=spec.device,
        load_pipeline_args=dict(spec.options.get("pipeline_args") or {})))


def predict(model: BeamHandler, inputs, spec: ModelConfig):
    return model.predict(common.texts(inputs), spec.output_names)
