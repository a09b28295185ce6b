"""The BulkInferrer configurations of the template: one per trained framework, one per
multi-model pattern (A/B, keyed, sequence) over the PyTorch and scikit-learn models, one
for a pretrained image classifier (`pipeline.create_image_pipeline`) and one for sentence
embeddings (`pipeline.create_text_pipeline`).

Each is an `inference.config.InferenceConfig`; edit them here to change what runs.
"""

from typing import Sequence

from inference.config import ImageSpec, InferenceConfig, InputSpec, LabelSpec, ModelConfig
from template import config, features

# The frameworks the multi-model patterns combine; the pipeline trains them when a
# pattern is asked for.
PATTERN_FRAMEWORKS = ("pytorch", "sklearn")

# Per framework, how its model is called. The scikit-learn and XGBoost trainers save
# classifiers whose big-tipper probability is predict_proba's column 1; scikit-learn's
# joblib file is a pickle, loaded only because this pipeline trained it itself.
_OPTIONS = {
    "sklearn": {"method": "predict_proba", "trusted": True},
    "xgboost": {"method": "predict_proba"},
}


def model_config(framework: str, name: str = "", model_input="") -> ModelConfig:
    """One trained model of the template. Keras parses raw examples itself (TFX's
    BulkInferrer path); the others read the float32 matrix of transformed features."""
    name = name or framework
    model_input = model_input or f"Trainer.{framework}"
    if framework == "keras":
        return ModelConfig(
            name=name, model_input=model_input, max_batch_size=1024, device=config.INFERENCE_DEVICE
        )
    return ModelConfig(
        name=name,
        model_input=model_input,
        inputs=InputSpec(features=features.MODEL_FEATURES, dtype="float32"),
        max_batch_size=1024,
        device=config.INFERENCE_DEVICE,
        options=dict(_OPTIONS.get(framework, {})),
    )


def single(framework: str) -> InferenceConfig:
    return InferenceConfig(models=[model_config(framework)])


def ab() -> InferenceConfig:
    """A/B: a stable hash of each trip's record sends 50% to each model."""
    return InferenceConfig(
        models=[model_config(f) for f in PATTERN_FRAMEWORKS], routing="ab", fractions=[0.5, 0.5]
    )


def keyed() -> InferenceConfig:
    """Keyed: weekend trips (days 1 and 7) to scikit-learn, weekdays to PyTorch, with one
    model in memory at a time and records grouped by key to avoid reloading."""
    weekdays = [str(day) for day in range(2, 7)]
    pytorch, sklearn = (model_config(f) for f in PATTERN_FRAMEWORKS)
    pytorch.keys, sklearn.keys = weekdays, ["1", "7"]
    return InferenceConfig(
        models=[pytorch, sklearn],
        routing="keyed",
        routing_feature="trip_start_day",
        max_models_per_worker_hint=1,
        group_by_key=True,
    )


def sequence() -> InferenceConfig:
    """Sequence: PyTorch scores each trip, then scikit-learn scores the record enriched
    with PyTorch's score (feature `pytorch_output_0`), so both travel downstream."""
    return InferenceConfig(models=[model_config(f) for f in PATTERN_FRAMEWORKS], routing="sequence")


PATTERNS = {"ab": ab, "keyed": keyed, "sequence": sequence}

# How ImageNet models (torchvision's, Keras applications in "torch" mode) expect pixels.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def image_classifier(
    labels_file: str, size: Sequence[int] = (224, 224), layout: str = "NCHW", top_k: int = 5
) -> InferenceConfig:
    """A pretrained image classifier (`create_image_pipeline`), e.g. a torchvision ResNet
    saved as TorchScript or ONNX: each image resized to `size` ([height, width]),
    scaled to [0, 1] and normalised as ImageNet models expect; its logits become
    probabilities, labelled with the class names of `labels_file` (one per line), the
    `top_k` best per image. The model comes from the BulkInferrer's `model` input."""
    return InferenceConfig(
        models=[
            ModelConfig(
                name="classifier",
                max_batch_size=64,
                device=config.INFERENCE_DEVICE,
                inputs=InputSpec(
                    features=["image"],
                    image=ImageSpec(
                        size=list(size),
                        layout=layout,
                        scale=1 / 255,
                        mean=IMAGENET_MEAN,
                        std=IMAGENET_STD,
                    ),
                ),
                labels=LabelSpec(file=labels_file, softmax=True, top_k=top_k),
            )
        ]
    )


# The text pipeline: which feature holds the text, and the row layout of its predictions.
TEXT_FEATURE = "text"
TEXT_ROW_FEATURES = "review_id:INTEGER,product:STRING,text:STRING"
TEXT_ROW_OUTPUTS = "embedding:ARRAY<FLOAT>"


def text_embeddings(model_uri: str = "") -> InferenceConfig:
    """Sentence embeddings of the `text` feature (`create_text_pipeline`) from a Hugging
    Face folder alone: its tokenizer, mean pooling over the attention mask, normalised
    (the folder's sentence-transformers settings), one float32 vector per record. The
    model comes from the BulkInferrer's `model` input, or from `model_uri`."""
    return InferenceConfig(
        models=[
            ModelConfig(
                name="minilm",
                uri=model_uri,
                framework="huggingface",
                inputs=InputSpec(features=[TEXT_FEATURE], dtype="bytes"),
                max_batch_size=256,
                device=config.INFERENCE_DEVICE,
                options={"task": "feature-extraction", "pooling": "mean"},
            )
        ]
    )
