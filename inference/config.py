"""The declarative inference configuration: which models run, on which inputs, how.

One `InferenceConfig` describes everything the engine needs. It is plain data (JSON in,
JSON out) so that a TFX component can carry it in its execution properties and a
streaming job can take it from a flag; `validate()` checks it once, before any Beam work.
"""
import dataclasses
import difflib
import json
import os
import typing
from typing import Any, Dict, List, Optional, Union

# The framework registry: name -> the module that declares and runs it (see
# `inference.frameworks`), in the order detection asks them when a model sets no framework.
# Adding a framework is its module and its line here. The names live at this bottom layer so
# that `validate()` checks a model's framework with no import of the engine (imports point
# down); what each framework is, it declares in its module, read where models resolve.
FRAMEWORKS = {
    "tensorflow": "inference.frameworks.tensorflow",  # tf.Example signatures (TFX's path)
    "keras": "inference.frameworks.keras",  # SavedModels and Keras files on dense tensors
    "pytorch": "inference.frameworks.pytorch",
    "sklearn": "inference.frameworks.sklearn",
    "onnx": "inference.frameworks.onnx",
    "xgboost": "inference.frameworks.xgboost",
    "huggingface": "inference.frameworks.huggingface",
    "tensorrt": "inference.frameworks.tensorrt",
    "custom": "inference.frameworks.custom",
    "remote": "inference.frameworks.remote",  # a model server or a Vertex AI endpoint
}
DTYPES = ("float32", "float64", "int32", "int64", "bytes")
LAYOUTS = ("stacked", "dict")
PADDINGS = ("none", "longest", "max_length")
IMAGE_LAYOUTS = ("NHWC", "NCHW")
IMAGE_FITS = ("stretch", "center_crop")
# Pillow's resampling filters, by the names of Image.Resampling.
RESAMPLES = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
ROUTINGS = ("shadow", "ab", "keyed", "sequence")


class ConfigError(ValueError):
    """A configuration that cannot run; the message says what to change."""


@dataclasses.dataclass
class ImageSpec:
    """Image features: each record holds one encoded image file (JPEG, PNG, or any format
    Pillow reads), decoded, resized and normalised into the model's input, a batch at once.

    size: [height, width] of the model's input.
    channels: 3 (RGB), 1 (grayscale) or 4 (RGBA); every image is converted to it.
    layout: "NHWC" ([batch, height, width, channels], TensorFlow/Keras) or "NCHW"
      ([batch, channels, height, width], PyTorch).
    fit: "stretch" resizes to `size` whatever the aspect ratio; "center_crop" scales the
      image to cover `size` and crops the centre (Pillow's ImageOps.fit).
    resample: the resampling filter (Pillow's names).
    scale, mean, std: pixel values (0-255) become `(pixel * scale - mean) / std`, with one
      mean and std per channel (or one for all); e.g. scale=1/255 for [0, 1], and
      ImageNet's mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225] on top.
    """
    size: List[int] = dataclasses.field(default_factory=list)
    channels: int = 3
    layout: str = "NHWC"
    fit: str = "stretch"
    resample: str = "bilinear"
    scale: float = 1.0
    mean: List[float] = dataclasses.field(default_factory=list)
    std: List[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LabelSpec:
    """Class scores to readable labels: a step of the engine after the model, the same for
    every framework.

    names: the class names, name i for column i of the scores; or
    file: a text file (local, gs://, ...) with one class name per line, read when the
      pipeline is built.
    output: the model output holding the scores, [batch, classes]; may be left empty when
      the model has one output.
    softmax: turn the scores (logits) into probabilities first.
    top_k: how many of the best classes to give per record.
    Outputs added to the model's: `label` (the best class's name, bytes) and `score` (its
    score, float32); with top_k > 1 also `top_k_labels` and `top_k_scores`, best first.
    """
    names: List[str] = dataclasses.field(default_factory=list)
    file: str = ""
    output: str = ""
    softmax: bool = False
    top_k: int = 1

    def __post_init__(self):
        self.file = _path(self.file)


@dataclasses.dataclass
class InputSpec:
    """How decoded features become one model's inputs.

    features: feature names, in the order the model expects them.
    dtype: the dtype of the model input(s).
    layout: "stacked" -> one array [batch, n_features * width]; "dict" -> {feature: [batch, width]}.
    padding: "none" (default): every record must hold exactly `width` values of each
      feature, any other count is a bad record; "longest": variable-length features are
      padded to the batch's longest value list; "max_length": padded (and truncated) to
      `max_length`. Padding uses `pad_value`.
    allow_non_finite: NaN and +-inf values are bad records unless this is set.
    image: the features are encoded images (see ImageSpec); each becomes a float array of
      images in `dtype` (float32 or float64), and `width` and `padding` do not apply.
    """
    features: List[str] = dataclasses.field(default_factory=list)
    dtype: str = "float32"
    layout: str = "stacked"
    padding: str = "none"
    width: int = 1
    max_length: Optional[int] = None
    pad_value: float = 0.0
    allow_non_finite: bool = False
    image: Optional[ImageSpec] = None


@dataclasses.dataclass
class ModelConfig:
    """One model: where it is, what runs it, and the controls passed to Beam's handler.

    uri: the model's path (a string or an os.PathLike). Empty: taken from the component's
      `model` input: the Model artifact made by the component named `model_input` (e.g.
      "Trainer.pytorch"), or the `model_input`-th one (by default the first).
    framework: one of FRAMEWORKS; None detects it from the files at `uri`.
    options: framework-specific settings (e.g. `model_class` for a PyTorch state dict,
      `handler` for a custom ModelHandler, `signature_name` for TensorFlow).
    labels: class names for a classifier's scores (see LabelSpec), any framework.
    """
    name: str = "model"
    uri: str = ""
    model_input: Union[int, str] = 0
    framework: Optional[str] = None
    inputs: InputSpec = dataclasses.field(default_factory=InputSpec)
    output_names: List[str] = dataclasses.field(default_factory=list)
    min_batch_size: Optional[int] = None
    max_batch_size: Optional[int] = None
    max_batch_duration_secs: Optional[int] = None
    large_model: bool = False
    model_copies: Optional[int] = None
    device: str = "CPU"
    options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    labels: Optional[LabelSpec] = None
    # Keyed routing: the values of InferenceConfig.routing_feature this model serves.
    keys: List[str] = dataclasses.field(default_factory=list)
    # User functions, as "package.module.fn" or "path/to/module_file.py:fn":
    #   preprocess_fn(inputs) -> inputs: on a batch's model inputs (the stacked array or
    #     dict of arrays InputSpec gives), before the model;
    #   postprocess_fn(result: PredictionResult) -> PredictionResult: on each record's
    #     result, e.g. class ids to label names.
    preprocess_fn: str = ""
    postprocess_fn: str = ""
    # Length bucketing: each decoded batch is split by the value count of `length_feature`
    # (one of inputs.features) at the `length_buckets` boundaries (lower-inclusive, as
    # Beam's batch_bucket_boundaries; default Beam's [16, 32, 64, 128, 256, 512]) and each
    # part runs, padded, on its own, so short records are not padded to the batch's longest.
    length_feature: str = ""
    length_buckets: List[int] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.uri = _path(self.uri)


@dataclasses.dataclass
class InferenceConfig:
    """All models of one inference step and how examples reach them."""
    models: List[ModelConfig] = dataclasses.field(default_factory=lambda: [ModelConfig()])
    # How records reach the models:
    #   shadow: every record goes to every model;
    #   ab: each record goes to one model, picked by a deterministic hash of the record's
    #     `routing_feature` value (of the whole record if unset), in `fractions`;
    #   keyed: each record goes to the model whose `keys` hold its `routing_feature` value
    #     (Beam's KeyedModelHandler; `max_models_per_worker_hint` caps models in memory,
    #     `group_by_key` groups records by key first to avoid model thrashing);
    #   sequence: models run in order; each next model reads the record enriched with the
    #     previous models' outputs as features named `<model>_<output>`.
    routing: str = "shadow"
    routing_feature: str = ""
    fractions: List[float] = dataclasses.field(default_factory=list)
    max_models_per_worker_hint: Optional[int] = None
    group_by_key: bool = False
    # Per-batch inference timeout: a batch that takes longer is abandoned (its call is left
    # to a daemon thread) and its records are retried one by one; those still too slow
    # fail at stage "timeout".
    timeout_secs: Optional[float] = None
    # Bounded runs: a file of which nothing can be read (not a TFRecord file) fails the run
    # by default; True makes it a dead letter, its records estimated from the split's bytes
    # per record and counted toward max_failure_fraction.
    skip_unreadable_files: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "InferenceConfig":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "InferenceConfig":
        """The configuration that `data` (parsed JSON) describes; raises ConfigError listing
        every unknown field and every value of the wrong type."""
        problems = []
        config = _typed(data, cls, "", problems, from_json=True)
        _raise_if(problems)
        return config

    def validate(self, bounded: Optional[bool] = None) -> "InferenceConfig":
        """Checks the whole configuration; raises ConfigError listing every problem.

        Values of the wrong type are reported first, alone: the other checks compare values.
        bounded: True for a bounded run (the BulkInferrer), False for streaming; options the
          mode cannot honour are refused. None checks what holds in both.
        """
        problems = []
        _typed(self, InferenceConfig, "", problems)
        _raise_if(problems)
        problems.extend(self._mode_problems(bounded))
        if not self.models:
            problems.append("no models: give at least one ModelConfig")
        if self.routing not in ROUTINGS:
            problems.append(f"routing={self.routing!r}: choose one of {ROUTINGS}")
        if self.timeout_secs is not None and self.timeout_secs <= 0:
            problems.append(f"timeout_secs={self.timeout_secs}: must be positive")
        problems.extend(self._routing_problems())
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            problems.append(f"model names must be unique, got {names}")
        for model in self.models:
            problems.extend(f"model {model.name!r}: {p}" for p in _model_problems(model))
        _raise_if(problems)
        return self

    def _mode_problems(self, bounded: Optional[bool]) -> List[str]:
        problems = []
        if bounded:
            for model in self.models:
                if model.max_batch_duration_secs:
                    # Beam's stateful, time-bounded batching lost records in bounded
                    # pipelines here (Beam 2.74, DirectRunner).
                    problems.append(
                        f"model {model.name!r}: max_batch_duration_secs is for streaming "
                        f"(python -m inference.streaming); in a bounded run, Beam's stateful "
                        f"batching loses records, and batches fill without waiting")
        elif bounded is False and self.skip_unreadable_files:
            problems.append("skip_unreadable_files is for bounded runs (files); streaming "
                            "reads messages")
        return problems

    def _routing_problems(self) -> List[str]:
        problems = []
        if self.routing == "ab":
            if self.fractions and (len(self.fractions) != len(self.models)
                                   or any(f < 0 for f in self.fractions)
                                   or abs(sum(self.fractions) - 1.0) > 1e-6):
                problems.append(f"fractions={self.fractions}: give one non-negative share "
                                f"per model, summing to 1")
        elif self.fractions:
            problems.append("fractions apply to routing='ab' only")
        if self.routing == "keyed":
            if not self.routing_feature:
                problems.append("routing='keyed' needs routing_feature: the feature whose "
                                "value picks the model")
            keys = [k for m in self.models for k in m.keys]
            if any(not m.keys for m in self.models):
                problems.append("routing='keyed': every model needs its keys")
            if len(keys) != len(set(keys)):
                problems.append("routing='keyed': a key may belong to one model only")
        elif any(m.keys for m in self.models):
            problems.append("model keys apply to routing='keyed' only")
        if self.max_models_per_worker_hint is not None and self.max_models_per_worker_hint < 1:
            problems.append("max_models_per_worker_hint must be a positive integer")
        return problems


def _model_problems(model: ModelConfig) -> List[str]:
    problems = []
    if not model.name or not model.name.replace("_", "").replace("-", "").isalnum():
        problems.append("name must be letters, digits, '-' or '_' (it names output folders)")
    if model.framework is not None and model.framework not in FRAMEWORKS:
        problems.append(f"framework={model.framework!r}: choose one of {tuple(FRAMEWORKS)} "
                        f"or None")
    spec = model.inputs
    if spec.dtype not in DTYPES:
        problems.append(f"inputs.dtype={spec.dtype!r}: choose one of {DTYPES}")
    if spec.layout not in LAYOUTS:
        problems.append(f"inputs.layout={spec.layout!r}: choose one of {LAYOUTS}")
    if spec.padding not in PADDINGS:
        problems.append(f"inputs.padding={spec.padding!r}: choose one of {PADDINGS}")
    if spec.width < 1:
        problems.append(f"inputs.width={spec.width}: must be >= 1")
    if spec.padding == "max_length" and not (spec.max_length and spec.max_length > 0):
        problems.append("inputs.padding='max_length' needs a positive inputs.max_length")
    for field in ("min_batch_size", "max_batch_size", "max_batch_duration_secs", "model_copies"):
        value = getattr(model, field)
        if value is not None and value < 1:
            problems.append(f"{field}={value!r}: must be a positive integer")
    if (model.min_batch_size and model.max_batch_size
            and model.min_batch_size > model.max_batch_size):
        problems.append(f"min_batch_size={model.min_batch_size} > "
                        f"max_batch_size={model.max_batch_size}")
    if model.length_feature and model.length_feature not in model.inputs.features:
        problems.append(f"length_feature={model.length_feature!r} must be one of "
                        f"inputs.features (its decoded value counts are the lengths)")
    if model.length_buckets and not model.length_feature:
        problems.append("length_buckets need length_feature: the feature whose value count "
                        "is the record's length")
    if model.length_buckets != sorted(model.length_buckets) or any(
            b <= 0 for b in model.length_buckets):
        problems.append(f"length_buckets={model.length_buckets}: must be sorted and "
                        f"positive")
    if model.device not in ("CPU", "GPU"):
        problems.append(f"device={model.device!r}: choose 'CPU' or 'GPU'")
    if isinstance(model.model_input, int) and model.model_input < 0:
        problems.append("model_input must be >= 0 or a component id")
    if spec.image is not None:
        problems.extend(_image_problems(spec))
    if model.labels is not None:
        problems.extend(_label_problems(model.labels))
    return problems


def _image_problems(spec: InputSpec) -> List[str]:
    image, problems = spec.image, []
    if len(image.size) != 2 or any(side < 1 for side in image.size):
        problems.append(f"inputs.image.size={image.size}: give [height, width], positive")
    if image.channels not in (1, 3, 4):
        problems.append(f"inputs.image.channels={image.channels}: choose 1 (grayscale), "
                        f"3 (RGB) or 4 (RGBA)")
    for field, choices in (("layout", IMAGE_LAYOUTS), ("fit", IMAGE_FITS),
                           ("resample", RESAMPLES)):
        if getattr(image, field) not in choices:
            problems.append(f"inputs.image.{field}={getattr(image, field)!r}: choose one "
                            f"of {choices}")
    for field in ("mean", "std"):
        values = getattr(image, field)
        if len(values) not in (0, 1, image.channels):
            problems.append(f"inputs.image.{field}={values}: give one value per channel "
                            f"({image.channels}) or one for all")
    if any(value == 0 for value in image.std):
        problems.append(f"inputs.image.std={image.std}: must not be 0")
    if spec.dtype not in ("float32", "float64"):
        problems.append(f"inputs.dtype={spec.dtype!r}: images become float32 or float64 "
                        f"arrays")
    if spec.padding != "none" or spec.width != 1:
        problems.append("inputs.padding and inputs.width do not apply to images: a record "
                        "holds one image per feature, resized to inputs.image.size")
    if len(spec.features) > 1 and spec.layout != "dict":
        problems.append(f"inputs.features={spec.features}: several image features need "
                        f"layout='dict' (one array of images per feature)")
    return problems


def _label_problems(labels: LabelSpec) -> List[str]:
    problems = []
    if bool(labels.names) == bool(labels.file):
        problems.append("labels: give the class names either in labels.names or in "
                        "labels.file (one per line)")
    if labels.top_k < 1:
        problems.append(f"labels.top_k={labels.top_k}: must be >= 1")
    elif labels.names and labels.top_k > len(labels.names):
        problems.append(f"labels.top_k={labels.top_k}: more than the {len(labels.names)} "
                        f"class names")
    return problems


def _raise_if(problems: List[str]) -> None:
    if problems:
        raise ConfigError("Invalid inference configuration:\n  - " + "\n  - ".join(problems))


# What each type is called in messages: (one, several).
_TYPE_NAMES = {bool: ("a boolean", "booleans"), int: ("an integer", "integers"),
               float: ("a number", "numbers"), str: ("a string", "strings"),
               type(None): ("null", "nulls"), dict: ("a dict with string keys",
                                                     "dicts with string keys")}


def _typed(value: Any, hint: Any, path: str, problems: List[str], from_json: bool = False):
    """`value` checked against the type annotation `hint`, recursively through dataclass
    fields, lists and dicts; each unknown field and ill-typed value is appended to
    `problems` as "<path>: <what is wrong>". With `from_json`, a dict stands for the
    dataclass `hint` names and is returned built as one; otherwise `value` is returned.

    Written here rather than with pydantic's strict mode, which checks the same types but
    takes a dict for a nested dataclass only when parsing JSON text and reports each arm of
    a Union as an error of its own.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Union and value is None and type(None) in args:
        return value
    if origin is Union and len(args) == 2 and type(None) in args:  # Optional[X]: checked as X
        return _typed(value, next(a for a in args if a is not type(None)), path, problems,
                      from_json)
    if origin is Union:
        for arm in args:
            arm_problems = []
            typed = _typed(value, arm, path, arm_problems, from_json)
            if not arm_problems:
                return typed
    elif dataclasses.is_dataclass(hint) and isinstance(value, hint):
        hints = typing.get_type_hints(hint)
        for field in dataclasses.fields(hint):
            _typed(getattr(value, field.name), hints[field.name], _join(path, field.name),
                   problems)
        return value
    elif dataclasses.is_dataclass(hint) and from_json and isinstance(value, dict):
        hints = typing.get_type_hints(hint)
        for unknown in sorted(set(value) - set(hints), key=str):
            problems.append(f"{_join(path, unknown)}: {_unknown_field(hint, unknown)}")
        return hint(**{name: _typed(value[name], hints[name], _join(path, name), problems,
                                    from_json)
                       for name in hints if name in value})
    elif origin is list and isinstance(value, list):
        return [_typed(item, args[0], f"{path}[{i}]", problems, from_json)
                for i, item in enumerate(value)]
    elif origin is dict and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {key: _typed(item, args[1], f"{path}.{key}", problems, from_json)
                for key, item in value.items()}
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    elif hint in _TYPE_NAMES and type(value) is hint:
        return value
    problems.append(f"{path or 'the configuration'}: expected {_type_name(hint)}, "
                    f"got {_shown(value)}")
    return value


def _path(value: Any) -> Any:
    """A path field's value: an os.PathLike (e.g. a pathlib.Path) as its string."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(hint: Any, several: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        return " or ".join(_type_name(arm, several) for arm in args)
    if origin is list:
        return ("lists" if several else "a list") + " of " + _type_name(args[0], several=True)
    if dataclasses.is_dataclass(hint):
        return f"objects ({hint.__name__})" if several else f"an object ({hint.__name__})"
    return _TYPE_NAMES[origin or hint][several]


def _unknown_field(cls, name: Any) -> str:
    fields = [field.name for field in dataclasses.fields(cls)]
    close = difflib.get_close_matches(str(name), fields, n=1)
    if close:
        return f"unknown field (did you mean {close[0]!r}?)"
    return f"unknown field; the fields of {cls.__name__} are {', '.join(sorted(fields))}"


def _shown(value: Any, limit: int = 80) -> str:
    """`value` as the JSON that would give it (as Python if it has no JSON form), cut short."""
    try:
        text = json.dumps(value)
        if json.loads(text) != value:  # e.g. a dict's int keys, which JSON makes strings
            text = repr(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
