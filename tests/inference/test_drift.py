"""inference.observe.drift on samples drawn here: what each kind of output is described as, TFDV's
distances between samples, the embedding's centroid shift, and the config's checks."""
import numpy as np
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from inference.observe import drift
from inference.observe.drift import DriftConfig

N = 2000


def _rows(rng, shift=0.0, flip=0.3, n=N):
    """A model's sample: a score, a label, a classifier's 3 probabilities, an embedding."""
    rows = []
    for i in range(n):
        x = rng.rand()
        probabilities = rng.dirichlet([1 + shift * 4, 1, 1])
        rows.append(drift.Row(i, "eval", {
            "score": np.array([x ** (1 + 3 * shift)], np.float32),
            "label": np.array([b"yes" if rng.rand() < flip else b"no"], object),
            "probabilities": probabilities.astype(np.float32),
            "embedding": (rng.randn(48) + shift).astype(np.float32)}))
    return {"m": rows}


def _compare(current_rows, baseline_rows, config=None):
    config = config or DriftConfig()
    current = drift.statistics(current_rows)["eval"]
    baseline = drift.statistics(baseline_rows)["eval"] if baseline_rows else None
    anomalies, measured = drift.compare(current, baseline, config,
                                        drift.embeddings(current_rows, "eval"))
    return anomalies, {m.feature: m for m in measured}


def test_each_kind_of_output_is_described_and_compared_by_its_distance():
    rows = _rows(np.random.RandomState(0))
    _, measured = _compare(rows, rows)
    assert {name: m.measure for name, m in measured.items()} == {
        "m.score": drift.JENSEN_SHANNON, "m.label": drift.L_INFINITY,
        "m.probabilities": drift.L_INFINITY, "m.probabilities.max": drift.JENSEN_SHANNON,
        "m.embedding.norm": drift.JENSEN_SHANNON, "m.embedding": drift.CENTROID_SHIFT}
    assert all(m.value == 0.0 for m in measured.values())  # the same sample


def test_two_samples_of_one_distribution_stay_below_the_thresholds():
    anomalies, measured = _compare(_rows(np.random.RandomState(1)),
                                   _rows(np.random.RandomState(2)))
    assert not anomalies.anomaly_info
    assert all(0 < m.value < m.threshold for m in measured.values())
    # The centroid shift between two samples of n records is about sqrt(2 / n).
    assert measured["m.embedding"].value == pytest.approx(np.sqrt(2 / N), rel=0.3)


def test_shifted_outputs_are_anomalies_with_their_distances():
    anomalies, measured = _compare(_rows(np.random.RandomState(1), shift=1.0, flip=0.6),
                                   _rows(np.random.RandomState(2)))
    drifted = {name for name, m in measured.items() if m.drifted}
    assert drifted == {"m.score", "m.label", "m.probabilities", "m.probabilities.max",
                       "m.embedding.norm", "m.embedding"}, measured
    kinds = {key: info.reason[0].type for key, info in anomalies.anomaly_info.items()}
    assert kinds["'m.score'"] == anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
    assert kinds["'m.label'"] == anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH
    assert kinds["'m.embedding'"] == anomalies_pb2.AnomalyInfo.CUSTOM_VALIDATION
    assert measured["m.label"].value == pytest.approx(0.3, abs=0.05)


def test_without_a_baseline_nothing_is_measured():
    anomalies, measured = _compare(_rows(np.random.RandomState(0)), None)
    assert not anomalies.anomaly_info
    assert all(m.value is None and not m.drifted for m in measured.values())


def test_thresholds_per_output_override_their_kind():
    config = DriftConfig(thresholds={"m.label": 0.9})
    _, measured = _compare(_rows(np.random.RandomState(1), flip=0.6),
                           _rows(np.random.RandomState(2)), config)
    assert measured["m.label"].threshold == 0.9 and not measured["m.label"].drifted
    assert measured["m.score"].threshold == config.jensen_shannon


def test_the_embedding_summary_round_trips_through_the_statistics():
    rows = _rows(np.random.RandomState(0))
    stats = drift.statistics(rows)["eval"]
    norm = next(f for f in stats.datasets[0].features
                if f.path.step[0] == "m.embedding" + drift.NORM)
    summary = drift.embedding(norm)
    vectors = drift.embeddings(rows, "eval")["m.embedding"]
    np.testing.assert_allclose(summary.centroid, vectors.mean(axis=0), atol=1e-6)
    assert summary.basis.shape == (2, 48) and summary.points.shape == (500, 2)
    assert drift.centroid_shift(vectors, summary) == pytest.approx(0, abs=1e-6)


def test_a_bad_config_says_what_is_wrong():
    with pytest.raises(ValueError, match="action='stop'"):
        DriftConfig(action="stop").validate()
    with pytest.raises(ValueError, match="jensen_shannon=-1"):
        DriftConfig(jensen_shannon=-1).validate()
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['threshold'\]"):
        DriftConfig.from_json('{"threshold": 0.2}')
    config = DriftConfig(action="fail", thresholds={"m.score": 0.2})
    assert DriftConfig.from_json(config.to_json()) == config
