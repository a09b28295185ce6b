"""Class scores to readable labels: the engine's step after a classifier, for any framework.

A model's [batch, classes] output (logits or probabilities) becomes, per record, the best
class's name and score, and optionally the top k, best first (see `LabelSpec`). It runs on
the batch's output arrays, after `predict` and before a user's `postprocess_fn`, so every
framework's classifier gets the same outputs from configuration alone.
"""
from typing import Dict, List, Mapping

import numpy as np
from apache_beam.io.filesystems import FileSystems
from scipy.special import softmax

from inference.config import ConfigError, LabelSpec

LABEL, SCORE, TOP_K_LABELS, TOP_K_SCORES = "label", "score", "top_k_labels", "top_k_scores"


def read_names(path: str) -> List[str]:
    """The class names of a labels file: one per line; blank lines at its end ignored."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        names = f.read().decode("utf-8").splitlines()
    while names and not names[-1].strip():
        names.pop()
    return names


class Labeller:
    """Adds `label`, `score` (and `top_k_labels`, `top_k_scores`) to a batch's outputs.

    The class names are read when the labeller is built (where the pipeline is built) and
    travel with it to the workers.
    """

    def __init__(self, spec: LabelSpec, model_name: str = ""):
        names = spec.names
        if spec.file:
            try:
                names = read_names(spec.file)
            except Exception as e:  # any filesystem's error
                raise ConfigError(f"model {model_name!r}: cannot read labels.file "
                                  f"{spec.file!r}: {type(e).__name__}: {e}") from e
        if spec.top_k > len(names):
            raise ConfigError(f"model {model_name!r}: labels.top_k={spec.top_k} is more "
                              f"than the {len(names)} class names of {spec.file or 'names'}")
        self._names = np.empty(len(names), dtype=object)
        self._names[:] = [name.encode() for name in names]
        self._spec = spec

    def __call__(self, outputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        scores = self._scores(outputs)
        if self._spec.softmax:
            scores = softmax(scores, axis=1)
        # Stable: equal scores rank by class index, as argmax picks the first.
        best = np.argsort(-scores, axis=1, kind="stable")[:, :self._spec.top_k]
        top_scores = np.take_along_axis(scores, best, axis=1).astype(np.float32)
        top_labels = self._names[best]
        labelled = dict(outputs, **{LABEL: top_labels[:, 0], SCORE: top_scores[:, 0]})
        if self._spec.top_k > 1:
            labelled.update({TOP_K_LABELS: top_labels, TOP_K_SCORES: top_scores})
        return labelled

    def _scores(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        name = self._spec.output
        if not name and len(outputs) != 1:
            raise ValueError(f"the model has outputs {sorted(outputs)}: name the one holding "
                             f"the class scores in labels.output")
        name = name or next(iter(outputs))
        if name not in outputs:
            raise ValueError(f"labels.output={name!r} is not an output of the model, whose "
                             f"outputs are {sorted(outputs)}")
        taken = sorted({LABEL, SCORE, TOP_K_LABELS, TOP_K_SCORES} & set(outputs))
        if taken:
            raise ValueError(f"the model has outputs named {taken}, which the labels would "
                             f"replace; rename them with output_names")
        scores = np.asarray(outputs[name])
        if scores.dtype.kind != "f" or scores.ndim < 2:
            raise ValueError(f"output {name!r} ({scores.dtype}, shape {scores.shape}) is not "
                             f"a [batch, classes] array of scores")
        scores = scores.reshape(len(scores), -1)
        if scores.shape[1] != len(self._names):
            raise ValueError(f"output {name!r} scores {scores.shape[1]} classes; labels "
                             f"name {len(self._names)}")
        return scores
