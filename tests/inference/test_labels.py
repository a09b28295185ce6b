"""Class scores to labels: the best classes by name, ties as argmax breaks them, softmax
when asked, and scores that do not fit the names refused with the reason."""
import numpy as np
import pytest

from inference.config import LabelSpec
from inference.data.labels import Labeller


def test_top_k_names_and_scores_best_first_ties_to_the_lower_class():
    scores = np.array([[0.1, 0.7, 0.2], [0.4, 0.2, 0.4]], dtype=np.float32)
    out = Labeller(LabelSpec(names=["a", "b", "c"], top_k=2))({"probs": scores})
    assert list(out["label"]) == [b"b", b"a"]
    assert [list(row) for row in out["top_k_labels"]] == [[b"b", b"c"], [b"a", b"c"]]
    np.testing.assert_array_equal(out["top_k_scores"], np.float32([[0.7, 0.2], [0.4, 0.4]]))
    np.testing.assert_array_equal(out["score"], np.float32([0.7, 0.4]))
    assert out["score"].dtype == np.float32
    assert out["probs"] is scores  # the model's outputs stay


def test_softmax_turns_logits_into_probabilities(tmp_path):
    (tmp_path / "names.txt").write_text("x\ny\nz\n\n")
    logits = np.array([[2.0, -1.0, 0.5]], dtype=np.float64)
    out = Labeller(LabelSpec(file=str(tmp_path / "names.txt"), softmax=True))(
        {"logits": logits})
    expected = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert out["label"][0] == b"x" and "top_k_labels" not in out
    np.testing.assert_allclose(out["score"], [expected.max()], rtol=1e-6)


@pytest.mark.parametrize("spec, outputs, problem", [
    (LabelSpec(names=["a", "b"]), {"p": np.zeros((2, 2)), "q": np.zeros((2, 2))},
     "name the one holding the class scores in labels.output"),
    (LabelSpec(names=["a", "b"], output="r"), {"p": np.zeros((2, 2))},
     "labels.output='r' is not an output of the model"),
    (LabelSpec(names=["a", "b"]), {"p": np.zeros((2, 3))}, "scores 3 classes; labels name 2"),
    (LabelSpec(names=["a", "b"]), {"p": np.zeros(2)}, "is not a [batch, classes] array"),
    (LabelSpec(names=["a", "b"], output="p"), {"p": np.zeros((2, 2)), "label": np.zeros(2)},
     "outputs named ['label']"),
])
def test_scores_that_do_not_fit_are_refused_with_the_reason(spec, outputs, problem):
    with pytest.raises(ValueError) as raised:
        Labeller(spec)(outputs)
    assert problem in str(raised.value)
