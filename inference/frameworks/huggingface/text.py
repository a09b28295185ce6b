"""The text tasks (TEXT_TASKS): text in, the folder's own tokenizer and model, configuration
only. Each batch's texts are tokenised in one call, truncated to the model's maximum length,
sorted into length buckets (`inference.data.batching.length_buckets`) and run a bucket at a
time, each padded only to its own longest text (see the package's docstring for the tasks'
outputs and options).
"""
import itertools
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from inference.config import ConfigError, LabelSpec, ModelConfig
from inference.data import batching, columns, labels
from inference.frameworks import import_object
from inference.frameworks.huggingface import common

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


def check(path: str, spec: ModelConfig):
    task, inputs = spec.options["task"], spec.inputs
    if inputs.layout == "dict" and len(inputs.features) != 2:
        raise ConfigError(f"model {spec.name!r}: task {task!r} takes one text feature, or a "
                          f"dict layout of two (text pairs); got {inputs.features}")
    _check_text_options(spec)
    if task in CLASSIFICATION_TASKS:
        config = _folder_config(path, spec)
        if config is not None:
            _class_names(config, spec)


def load(path: str, spec: ModelConfig) -> "TextModel":
    return TextModel.load(path, spec)


def predict(model: "TextModel", inputs, spec: ModelConfig):
    return model.predict(inputs)


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
        import transformers
        options, task = spec.options, spec.options["task"]
        args = common.load_args(spec)
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=bool(args.get("trust_remote_code")))
        model_class = import_object(options.get("model_class") or TEXT_TASKS[task],
                                    "options.model_class")
        model = model_class.from_pretrained(path, **args).to(common.device(spec)).eval()
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
        for positions in batching.length_buckets(lengths, most=self.texts_per_forward):
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
        from transformers.pipelines import text_classification
        function = self.spec.options.get("function_to_apply") or _default_function(
            self.model.config)
        scores = {"softmax": text_classification.softmax,
                  "sigmoid": text_classification.sigmoid,
                  "none": lambda x: x}[function](logits).astype(np.float32)
        return self._labeller({"scores": scores})

    def _entities(self, logits, real, positions, encoded, texts) -> Dict[str, np.ndarray]:
        """Each text's entities, from the transformers pipeline's own postprocessing of
        its logits (its real tokens only: what the pipeline computes for the text alone)."""
        from transformers.pipelines.token_classification import AggregationStrategy
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
        first, second = (common.texts(array) for array in inputs.values())
        return first, second
    return common.texts(inputs), None


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
    import transformers
    args = {k: v for k, v in common.load_args(spec).items() if k != "use_safetensors"}
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
