"""What the Hugging Face paths share: loading from the folder alone, the device, texts."""
import os

import numpy as np
import torch

from inference.config import ModelConfig
from inference.frameworks import trust

# transformers imports TensorFlow wherever it is installed (this stack has it, for TFX):
# seconds and hundreds of MB in each worker process, for PyTorch models that never use it.
# USE_TF=0 is transformers' own switch, read when it is first imported in the process; a
# user's own setting wins (USE_TF=AUTO: both frameworks, for a pipeline task on TensorFlow
# weights).
os.environ.setdefault("USE_TF", "0")


def device(spec: ModelConfig) -> str:
    return "cuda" if spec.device == "GPU" and torch.cuda.is_available() else "cpu"


def load_args(spec: ModelConfig) -> dict:
    """from_pretrained keyword arguments: the folder only (nothing downloaded), and
    safetensors weights unless the model is trusted (`.bin` files are pickles)."""
    args = {"local_files_only": True}
    if not trust.trusted(spec):
        args["use_safetensors"] = True
    args.update(spec.options.get("load_model_args") or {})
    if spec.options.get("trust_remote_code"):
        args["trust_remote_code"] = True
    return args


def texts(inputs):
    """Bytes features as str: one text per example, or a {feature: text} dict per example."""
    if isinstance(inputs, dict):
        by_feature = {name: [_text(row) for row in array] for name, array in inputs.items()}
        return [dict(zip(by_feature, row)) for row in zip(*by_feature.values())]
    return [_text(row) for row in inputs]


def _text(row: np.ndarray) -> str:
    if len(row) != 1:
        raise ValueError(f"a pipeline example takes one text per feature, got {len(row)} "
                         f"values")
    value = row[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

