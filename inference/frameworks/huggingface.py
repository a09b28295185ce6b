"""Hugging Face transformers models in a local (or mounted) folder.

Which path a configuration takes:

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
import itertools
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from inference.data import batching, columns, labels
from inference.frameworks import trust
from inference.config import ConfigError, LabelSpec, ModelConfig
from inference.frameworks import BeamHandler, import_object

# transformers imports TensorFlow wherever it is installed (this stack has it, for TFX):
# seconds and hundreds of MB in each worker process, for PyTorch models that never use it.
# USE_TF=0 is transformers' own switch, read when it is first imported in the process; a
# user's own setting wins (USE_TF=AUTO: both frameworks, for a pipeline task on TensorFlow
# weights).
os.environ.setdefault("USE_TF", "0")

DEFAULT_MODEL_CLASS = "transformers.AutoModel"

# The tasks run on the folder's tokenizer and model directly, and their model classes.
TEXT_TASKS = {
    "feature-extraction": "transformers.AutoModel",
    "text-classification": "transformers.AutoModelForSequenceClassification",
    "sentiment-analysis": "transformers.AutoModelForSequenceClassification",
    "token-classification": "transformers.AutoModelForTokenClassification",
    "ner": "transformers.AutoModelForTokenClassification",
}
CLASSIFICATION_TASKS = ("text-classification", "sentiment-analysis")
POOLINGS = ("mean", "cls", "none")
CLASSIFICATION_FUNCTIONS = ("softmax", "sigmoid", "none")
AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
TEXTS_PER_FORWARD_CPU = 32
_ARGUMENT_OPTIONS = ("pipeline_args", "load_model_args")


def check(path: str, spec: ModelConfig):
    options, task = spec.options, spec.options.get("task")
    _check_remote_code(spec)
    if task:
        inputs = spec.inputs
        if inputs.dtype != "bytes" or (inputs.layout == "stacked"
                                       and len(inputs.features) != 1):
            raise ConfigError(
                f"model {spec.name!r}: task {task!r} takes text: give inputs=InputSpec("
                f"features=[<one bytes feature>], dtype='bytes'), or a dict layout of "
                f"bytes features")
        if task in TEXT_TASKS and inputs.layout == "dict" and len(inputs.features) != 2:
            raise ConfigError(f"model {spec.name!r}: task {task!r} takes one text feature, "
                              f"or a dict layout of two (text pairs); got "
                              f"{inputs.features}")
        if task in TEXT_TASKS:
            _check_text_options(spec)
        if task in CLASSIFICATION_TASKS:
            config = _folder_config(path, spec)
            if config is not None:
                _class_names(config, spec)
    else:
        import_object(options.get("model_class") or DEFAULT_MODEL_CLASS,
                      "options.model_class")


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


def _check_text_options(spec: ModelConfig):
    options = spec.options
    problems = []
    for name, allowed in (("pooling", POOLINGS), ("function_to_apply",
                                                   CLASSIFICATION_FUNCTIONS),
                          ("aggregation_strategy", AGGREGATION_STRATEGIES)):
        if name in options and options[name] not in allowed:
            problems.append(f"options.{name}={options[name]!r}: choose one of {allowed}")
    for name in ("max_length", "top_k", "texts_per_forward"):
        value = options.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            problems.append(f"options.{name}={value!r}: must be a positive integer")
    if "normalize" in options and not isinstance(options["normalize"], bool):
        problems.append(f"options.normalize={options['normalize']!r}: must be true or false")
    if problems:
        raise ConfigError(f"model {spec.name!r}: " + "; ".join(problems))


def load(path: str, spec: ModelConfig):
    options = spec.options
    task = options.get("task")
    if task in TEXT_TASKS:
        return TextModel.load(path, spec)
    if task:
        from apache_beam.ml.inference import huggingface_inference  # pylint: disable=import-outside-toplevel
        return BeamHandler.load(huggingface_inference.HuggingFacePipelineModelHandler(
            task=task, model=path, device=spec.device,
            load_pipeline_args=dict(options.get("pipeline_args") or {})))
    model_class = import_object(options.get("model_class") or DEFAULT_MODEL_CLASS,
                                "options.model_class")
    model = model_class.from_pretrained(path, **_load_args(spec))
    return model.to(_device(spec)).eval()


def predict(model, inputs, spec: ModelConfig):
    if isinstance(model, TextModel):
        return model.predict(inputs)
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


def _device(spec: ModelConfig) -> str:
    return "cuda" if spec.device == "GPU" and torch.cuda.is_available() else "cpu"


def _load_args(spec: ModelConfig) -> dict:
    """from_pretrained keyword arguments: the folder only (nothing downloaded), and
    safetensors weights unless the model is trusted (`.bin` files are pickles)."""
    args = {"local_files_only": True}
    if not trust.trusted(spec):
        args["use_safetensors"] = True
    args.update(spec.options.get("load_model_args") or {})
    if spec.options.get("trust_remote_code"):
        args["trust_remote_code"] = True
    return args


# --- text tasks on the folder's tokenizer and model ----------------------------------------

class TextModel:
    """A tokenizer and a model from one folder, run on batches of texts for a TEXT_TASK."""

    def __init__(self, task: str, tokenizer, model, spec: ModelConfig, max_length: int,
                 pooling: str, normalize: bool):
        self.task = task
        self.tokenizer = tokenizer
        self.model = model
        self.spec = spec
        self.max_length = max_length
        self.pooling = pooling
        self.normalize = normalize
        self.buckets = list(batching.DEFAULT_LENGTH_BUCKETS)
        self.device = next(model.parameters()).device
        # On a CPU a forward pass costs per token, padding included: runs of texts of
        # similar lengths (sorted), each padded to its own longest, waste least. On a GPU a
        # pass costs per call: a bucket at a time.
        self.texts_per_forward = spec.options.get(
            "texts_per_forward", 0 if self.device.type == "cuda" else TEXTS_PER_FORWARD_CPU)
        self._postprocess = None  # the transformers pipeline of token classification
        self._labeller = None  # text classification: scores to id2label's names
        self._pad_values = {"input_ids": tokenizer.pad_token_id or 0,
                            "token_type_ids": tokenizer.pad_token_type_id}

    @classmethod
    def load(cls, path: str, spec: ModelConfig) -> "TextModel":
        import transformers  # pylint: disable=import-outside-toplevel
        options, task = spec.options, spec.options["task"]
        args = _load_args(spec)
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=bool(args.get("trust_remote_code")))
        model_class = import_object(options.get("model_class") or TEXT_TASKS[task],
                                    "options.model_class")
        model = model_class.from_pretrained(path, **args).to(_device(spec)).eval()
        sentence_transformers = _sentence_transformers_settings(path)
        max_length = (options.get("max_length") or sentence_transformers.get("max_length")
                      or _model_max_length(tokenizer, model))
        text_model = cls(task, tokenizer, model, spec, max_length,
                         options.get("pooling") or sentence_transformers.get("pooling",
                                                                              "mean"),
                         options.get("normalize", sentence_transformers.get("normalize",
                                                                            False)))
        if task in ("token-classification", "ner"):
            text_model._postprocess = transformers.pipeline(
                "token-classification", model=model, tokenizer=tokenizer, device=model.device)
        elif task in CLASSIFICATION_TASKS:
            text_model._labeller = labels.Labeller(LabelSpec(
                names=_class_names(model.config, spec), top_k=options.get("top_k") or 1),
                spec.name)
        return text_model

    def predict(self, inputs) -> Dict[str, np.ndarray]:
        texts, pairs = _texts_and_pairs(inputs)
        token_classification = self._postprocess is not None
        encoded = self.tokenizer(
            texts, pairs, truncation=True, max_length=self.max_length, padding=False,
            return_offsets_mapping=token_classification and self.tokenizer.is_fast,
            return_special_tokens_mask=token_classification)
        lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
        parts = []
        for positions in self._buckets(lengths):
            padded = self._padded(encoded, positions, lengths[positions])
            inputs = {name: torch.from_numpy(array).to(self.device)
                      for name, array in padded.items()}
            with torch.inference_mode():
                outputs = self.model(**inputs)
            parts.append((positions, self._outputs(outputs, padded["attention_mask"],
                                                   inputs["attention_mask"], positions,
                                                   encoded, texts)))
        return _in_order(parts, len(texts))

    def _padded(self, encoded, positions: np.ndarray, lengths: np.ndarray
                ) -> Dict[str, np.ndarray]:
        """The model inputs of the texts at `positions`, padded to their longest on the
        tokenizer's padding side. Done here, in NumPy, rather than with `tokenizer.pad`,
        which pads one text at a time in Python (~0.15 ms per text, against ~5 us)."""
        width = int(lengths.max())
        columns_ = np.arange(width)
        real = (columns_ < lengths[:, None] if self.tokenizer.padding_side == "right"
                else columns_ >= width - lengths[:, None])
        padded = {"attention_mask": real.astype(np.int64)}
        for name in self.tokenizer.model_input_names:
            if name in padded or name not in encoded:
                continue
            array = np.full((len(positions), width), self._pad_values.get(name, 0), np.int64)
            array[real] = np.fromiter(
                itertools.chain.from_iterable(encoded[name][i] for i in positions),
                dtype=np.int64, count=int(lengths.sum()))
            padded[name] = array
        return padded

    def _buckets(self, lengths: np.ndarray) -> List[np.ndarray]:
        """Batch positions, shortest texts first, by token-count bucket (lower-inclusive
        boundaries, as Beam's), each cut into runs of `texts_per_forward` (0: no cut)."""
        order = np.argsort(lengths, kind="stable")
        bucket = np.searchsorted(self.buckets, lengths[order], side="right")
        groups = np.split(order, np.flatnonzero(np.diff(bucket)) + 1)
        size = self.texts_per_forward
        if not size:
            return groups
        return [group[start:start + size] for group in groups
                for start in range(0, len(group), size)]

    def _outputs(self, outputs, mask: np.ndarray, device_mask: torch.Tensor,
                 positions: np.ndarray, encoded, texts: List[str]) -> Dict[str, np.ndarray]:
        """A bucket's outputs; `mask`: its attention mask (1 for real tokens), and
        `device_mask` the same on the model's device."""
        if self.task == "feature-extraction":
            return self._embeddings(outputs[0], device_mask)
        logits = outputs["logits"].float().cpu().numpy()
        if self._postprocess is None:
            return self._classes(logits)
        return self._entities(logits, mask.astype(bool), positions, encoded, texts)

    def _embeddings(self, tokens: torch.Tensor, mask: torch.Tensor):
        """Pooled as sentence-transformers' Pooling and Normalize modules do."""
        tokens = tokens.float()
        if self.pooling == "none":
            per_text, real = tokens.cpu().numpy(), mask.cpu().numpy().astype(bool)
            return {"token_embeddings": columns.objects(
                [per_text[i, real[i]] for i in range(len(per_text))])}
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / torch.clamp(weights.sum(1), min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return {"embedding": pooled.cpu().numpy()}

    def _classes(self, logits: np.ndarray) -> Dict[str, np.ndarray]:
        from transformers.pipelines import text_classification  # pylint: disable=import-outside-toplevel
        function = self.spec.options.get("function_to_apply") or _default_function(
            self.model.config)
        scores = {"softmax": text_classification.softmax,
                  "sigmoid": text_classification.sigmoid,
                  "none": lambda x: x}[function](logits).astype(np.float32)
        return self._labeller({"scores": scores})

    def _entities(self, logits, real, positions, encoded, texts) -> Dict[str, np.ndarray]:
        """Each text's entities, from the transformers pipeline's own postprocessing of
        its logits (its real tokens only: what the pipeline computes for the text alone)."""
        from transformers.pipelines.token_classification import AggregationStrategy  # pylint: disable=import-outside-toplevel
        strategy = AggregationStrategy[
            (self.spec.options.get("aggregation_strategy") or "none").upper()]
        offsets = encoded.get("offset_mapping")
        per_text = []
        for row, i in enumerate(positions):
            entities = self._postprocess.postprocess([{
                "logits": torch.from_numpy(logits[row, real[row]][None]),
                "sentence": texts[i],
                "input_ids": torch.tensor([encoded["input_ids"][i]]),
                "offset_mapping": None if offsets is None else torch.tensor([offsets[i]]),
                "special_tokens_mask": torch.tensor([encoded["special_tokens_mask"][i]]),
            }], aggregation_strategy=strategy)
            per_text.append(entities)
        keys = ["entity_group" if strategy != AggregationStrategy.NONE else "entity",
                "score", "word", "start", "end"] + (
                    ["index"] if strategy == AggregationStrategy.NONE else [])
        return {key: columns.objects([_entity_values(entities, key) for entities in per_text])
                for key in keys}


def _texts_and_pairs(inputs) -> Tuple[List[str], Optional[List[str]]]:
    """A batch's texts (one bytes feature), or its text pairs (a dict of two)."""
    if isinstance(inputs, dict):
        first, second = (_texts(array) for array in inputs.values())
        return first, second
    return _texts(inputs), None


def _entity_values(entities: Sequence[dict], key: str) -> np.ndarray:
    values = [entity.get(key) for entity in entities]
    if key in ("entity", "entity_group", "word"):
        return np.array([str(v).encode() for v in values], dtype=object)
    if key == "score":
        return np.array(values, dtype=np.float32)
    return np.array([-1 if v is None else v for v in values], dtype=np.int64)


def _in_order(parts, size: int) -> Dict[str, np.ndarray]:
    """Per-bucket outputs back in the batch's order."""
    out = {}
    for positions, outputs in parts:
        for name, values in outputs.items():
            if name not in out:
                out[name] = np.empty((size,) + values.shape[1:], dtype=values.dtype)
            out[name][positions] = values
    return out


def _folder_config(path: str, spec: ModelConfig):
    """The folder's model config as `load` will see it (options.load_model_args applied),
    or None when AutoConfig cannot read it (e.g. the own config type of a custom
    model_class): such a model's labels are checked where it loads."""
    import transformers  # pylint: disable=import-outside-toplevel
    args = {k: v for k, v in _load_args(spec).items() if k != "use_safetensors"}
    try:
        config, _ = transformers.AutoConfig.from_pretrained(path, return_unused_kwargs=True,
                                                            **args)
    except (OSError, ValueError, KeyError):
        return None
    return config


def _class_names(config, spec: ModelConfig) -> List[str]:
    """A classifier's class names in id order (`config.id2label`), one per id from 0, and
    at least options.top_k of them. Ids may be strings, as JSON (load_model_args) has them."""
    id2label = {int(i): name for i, name in config.id2label.items()}
    ids = sorted(id2label)
    if ids != list(range(len(ids))):
        raise ConfigError(f"model {spec.name!r}: its config.id2label has ids {ids}; a "
                          f"classifier's labels need the ids 0 to {len(ids) - 1}")
    top_k = spec.options.get("top_k") or 1
    if top_k > len(ids):
        raise ConfigError(f"model {spec.name!r}: options.top_k={top_k} is more than the "
                          f"model's {len(ids)} classes (its config.id2label)")
    return [id2label[i] for i in ids]


def _default_function(config) -> str:
    """The score function the transformers text-classification pipeline picks."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def _model_max_length(tokenizer, model) -> int:
    """The tokenizer's maximum length when it states a real one, else the model's
    position embeddings (tokenizers without one say ~1e30)."""
    limits = [getattr(model.config, "max_position_embeddings", None)]
    if tokenizer.model_max_length and tokenizer.model_max_length < 1e6:
        limits.append(tokenizer.model_max_length)
    limits = [int(limit) for limit in limits if limit]
    if not limits:
        raise ConfigError("the model states no maximum length: set options.max_length")
    return min(limits)


def _sentence_transformers_settings(path: str) -> dict:
    """What a sentence-transformers folder says about its embeddings: pooling ("mean" or
    "cls"), normalize (a Normalize module), max_length (max_seq_length). Empty for
    other folders."""
    modules = _json(os.path.join(path, "modules.json"))
    if not isinstance(modules, list):
        return {}
    settings = {}
    max_seq_length = (_json(os.path.join(path, "sentence_bert_config.json")) or {}).get(
        "max_seq_length")
    if max_seq_length:
        settings["max_length"] = int(max_seq_length)
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith(".Normalize"):
            settings["normalize"] = True
        elif kind.endswith(".Pooling"):
            pooling = _json(os.path.join(path, module.get("path", ""), "config.json")) or {}
            modes = [mode for mode, key in (("mean", "pooling_mode_mean_tokens"),
                                            ("cls", "pooling_mode_cls_token"))
                     if pooling.get(key)]
            others = [key for key, value in pooling.items()
                      if key.startswith("pooling_mode_") and value and key not in (
                          "pooling_mode_mean_tokens", "pooling_mode_cls_token")]
            if len(modes) != 1 or others:
                raise ConfigError(
                    f"{path}: its sentence-transformers pooling ({pooling}) is not one "
                    f"of {POOLINGS[:2]}; set options.pooling")
            settings["pooling"] = modes[0]
    return settings


def _json(path: str):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


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
