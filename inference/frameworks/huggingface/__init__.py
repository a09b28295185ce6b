"""Hugging Face transformers models in a local (or mounted) folder: one framework,
"huggingface", three ways to run a model, each in its module (`text`, `pipeline`,
`tensors`), by the configuration's options.task:

- options.task one of TEXT_TASKS: text in, the folder's own tokenizer and model, config
  only. Each batch's texts (one bytes feature, InputSpec(features=["text"],
  dtype="bytes"); or a dict layout of two bytes features: text pairs) are tokenised in one
  call, truncated to the model's maximum length (options.max_length), sorted into length
  buckets (Beam's boundaries, 16 to 512 tokens) and run a bucket at a time, each padded
  only to its own longest text. Outputs are float32.
    "feature-extraction": `embedding` [hidden], the token embeddings pooled over the
      attention mask as sentence-transformers defines it (options.pooling "mean" or
      "cls"; optionally L2-normalised, options.normalize); pooling "none":
      `token_embeddings`, each text's [tokens, hidden] (a ragged column). Unset options
      follow the folder's sentence-transformers files when it has them (pooling, Normalize
      module, max_seq_length), else mean pooling, not normalised, the tokenizer's or the
      model's maximum length.
    "text-classification" (or "sentiment-analysis"): `label` (bytes, from the model's
      `config.id2label`), `score`, `scores` (every label's, in id order); with
      options.top_k > 1: `top_k_labels` and `top_k_scores`, best first (the engine's
      `labels.Labeller`, as any framework's classifier with a LabelSpec). Scores as the
      transformers pipeline computes them (options.function_to_apply: "softmax",
      "sigmoid", "none").
    "token-classification" (or "ner"): per text, its entities as the transformers
      pipeline's postprocessing gives them (options.aggregation_strategy, default
      "none"), as ragged columns: `entity` (or `entity_group` when aggregated), `score`,
      `word`, `start`, `end` (character offsets), and `index` without aggregation.
- another options.task (e.g. "question-answering"): Beam's
  HuggingFacePipelineModelHandler (through `BeamHandler`), one example per text (or per
  {feature: text} dict with a dict layout); options.pipeline_args: more
  `transformers.pipeline(...)` keyword arguments.
- no task: the model class options.model_class (default "transformers.AutoModel")
  loaded with from_pretrained and run on the batch's int64 token tensors: a dict layout
  passes each feature as the keyword argument of its name (input_ids, attention_mask, ...),
  a stacked layout the one tensor positionally. Padding comes from the InputSpec.
  options.load_model_args: from_pretrained keyword arguments.

Weights load from safetensors files; pickle-based weights (`.bin`) need `trusted`, and so
does `trust_remote_code` (code shipped in the model's folder). Nothing is downloaded:
everything loads from the folder.
"""
from inference import frameworks
from inference.config import ConfigError, ModelConfig
from inference.frameworks import Framework, trust
from inference.frameworks.huggingface import pipeline, tensors, text

# A folder with a config.json is a Hugging Face model (when no SavedModel was found first).
FRAMEWORK = Framework(folder=lambda folder, names: "config.json" in names, whole_folder=True)
_ARGUMENT_OPTIONS = ("pipeline_args", "load_model_args")


def _path(spec: ModelConfig):
    """The module that runs the model's task."""
    task = spec.options.get("task")
    return text if task in text.TEXT_TASKS else pipeline if task else tensors


def check(path: str, spec: ModelConfig):
    _check_remote_code(spec)
    task = spec.options.get("task")
    if task:
        inputs = spec.inputs
        if inputs.dtype != "bytes" or (inputs.layout == "stacked"
                                       and len(inputs.features) != 1):
            raise ConfigError(
                f"model {spec.name!r}: task {task!r} takes text: give inputs=InputSpec("
                f"features=[<one bytes feature>], dtype='bytes'), or a dict layout of "
                f"bytes features")
    frameworks.check(_path(spec), path, spec)


def load(path: str, spec: ModelConfig):
    return _path(spec).load(path, spec)


def predict(model, inputs, spec: ModelConfig):
    return _path(spec).predict(model, inputs, spec)


def _check_remote_code(spec: ModelConfig):
    """`trust_remote_code` runs code from the model's folder: only for trusted models."""
    asked = [name for name, value in [("options.trust_remote_code",
                                       spec.options.get("trust_remote_code"))] + [
        (f"options.{option}.trust_remote_code",
         (spec.options.get(option) or {}).get("trust_remote_code"))
        for option in _ARGUMENT_OPTIONS] if value]
    if asked and not trust.trusted(spec):
        raise ConfigError(
            f"model {spec.name!r}: {asked[0]} runs Python code shipped in the model's "
            f"folder; set it only for a model you trust, together with "
            f"options={{'trusted': True}}")
