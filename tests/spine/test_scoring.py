"""AUC, bootstrap interval, Youden point and ROC output against brute-force references."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from spine import scoring


def _pair_counting_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney by brute force: every (positive, negative) pair, ties count one half."""
    pos = scores[labels == 1].astype(np.float64)
    neg = scores[labels == 0].astype(np.float64)
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def _brute_force_youden(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Sweep every distinct score as threshold (positive iff score >= t); ties in J go to the highest threshold."""
    best_j, best_t = -np.inf, None
    for t in sorted(set(scores.tolist()), reverse=True):
        called = scores >= t
        j = called[labels == 1].mean() + (~called[labels == 0]).mean() - 1
        if j > best_j + 1e-12:
            best_j, best_t = j, t
    return best_j, best_t


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pair_counting(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.normal(size=60) + labels, 1)  # rounding makes ties
    assert scoring.roc_auc(labels, scores) == pytest.approx(_pair_counting_auc(labels, scores), abs=1e-12)


def test_auc_closed_forms():
    assert scoring.roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert scoring.roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert scoring.roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5
    with pytest.raises(ValueError, match="one class"):
        scoring.roc_auc(np.ones(5), np.arange(5.0))


def test_roc_curve_area_equals_auc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + labels, 1)
    curve = scoring.roc_curve(labels, scores)
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(scoring.roc_auc(labels, scores), abs=1e-12)
    assert curve["fpr"][-1] == 1 and curve["tpr"][-1] == 1


@pytest.mark.parametrize("seed", range(5))
def test_youden_matches_threshold_sweep(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    scores = np.round(rng.normal(size=80) + labels, 1)
    point = scoring.youden_point(labels, scores)
    best_j, best_t = _brute_force_youden(labels, scores)
    assert point["youden_j"] == pytest.approx(best_j, abs=1e-12)
    assert point["threshold"] == best_t
    check = scoring.operating_point(labels, scores, point["threshold"])
    assert check["sensitivity"] == point["sensitivity"] and check["specificity"] == point["specificity"]


def test_bootstrap_interval_contains_auc_and_is_seeded():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    a = scoring.evaluate_scores(labels, scores, ["normal", "abnormal"], n_resamples=300, seed=7)
    b = scoring.evaluate_scores(labels, scores, ["normal", "abnormal"], n_resamples=300, seed=7)
    c = scoring.evaluate_scores(labels, scores, ["normal", "abnormal"], n_resamples=300, seed=8)
    low, high = a["auc_ci"]
    assert low < a["auc"] < high
    assert 0.02 < high - low < 0.25  # about 4 standard errors of an AUC near 0.76 at n=300
    assert a["auc_ci"] == b["auc_ci"]
    assert a["auc_ci"] != c["auc_ci"]


def test_bootstrap_redraws_single_class_resamples():
    labels = np.array([1] + [0] * 9)  # most resamples of 10 lack the single positive
    scores = np.linspace(0, 1, 10)[::-1]
    seen = []

    def stat(idx):
        seen.append(idx)
        return scoring.roc_auc(labels[idx], scores[idx])

    scoring.bootstrap_interval(stat, 10, lambda idx: 0 < labels[idx].sum() < 10, n_resamples=50, seed=0)
    assert len(seen) == 50 and all(0 < labels[idx].sum() < 10 for idx in seen)
    with pytest.raises(ValueError, match="gave up"):
        scoring.bootstrap_interval(stat, 10, lambda idx: False, n_resamples=5, seed=0)


def test_multiclass_one_vs_rest_and_macro():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 150)
    scores = rng.normal(size=(150, 3))
    scores[np.arange(150), labels] += 1.0
    report = scoring.evaluate_scores(labels, scores, ["a", "b", "c"], thresholds=[0.0, 0.0, 0.0], n_resamples=50)
    per_class = [_pair_counting_auc((labels == k).astype(int), scores[:, k]) for k in range(3)]
    for k, name in enumerate("abc"):
        assert report["per_class"][name]["auc"] == pytest.approx(per_class[k], abs=1e-12)
        assert "at_threshold" in report["per_class"][name]
    assert report["macro_auc"] == pytest.approx(np.mean(per_class), abs=1e-12)
    low, high = report["macro_auc_ci"]
    assert low < report["macro_auc"] < high


def test_multiclass_absent_class_is_reported_undefined():
    labels = np.array([0, 1, 0, 1, 0, 1])
    scores = np.random.default_rng(0).random((6, 3))
    report = scoring.evaluate_scores(labels, scores, ["a", "b", "c"], n_resamples=20)
    assert report["per_class"]["c"]["auc"] is None
    assert report["macro_classes"] == ["a", "b"]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        scoring.evaluate_scores(np.array([0, 1]), np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="class indices"):
        scoring.evaluate_scores(np.array([0, 2]), np.zeros(2), ["a", "b"])


def test_roc_png_and_json_are_written(tmp_path):
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    scoring.save_roc_plot(scoring.roc_curves(labels, scores, ["normal", "abnormal"]), tmp_path / "roc.png")
    with Image.open(tmp_path / "roc.png") as img:
        assert img.format == "PNG" and img.size == (500, 500)
    scoring.save_json(dict(auc=0.5), tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == dict(auc=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "roc.png"]  # no temp files left
