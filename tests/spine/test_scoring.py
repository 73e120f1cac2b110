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


def _auc_resamples(labels, scores, groups, n_resamples=200, seed=5):
    return scoring.bootstrap_values(
        lambda idx: np.array([scoring.roc_auc(labels[idx], scores[idx])]),
        len(labels),
        lambda idx: 0 < labels[idx].sum() < len(idx),
        n_resamples,
        seed,
        groups=groups,
    )


def test_one_image_per_study_resamples_exactly_as_images():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 60)
    scores = rng.normal(size=60) + labels
    by_image = _auc_resamples(labels, scores, None)
    by_study = _auc_resamples(labels, scores, [f"study{i}" for i in range(60)])
    np.testing.assert_array_equal(by_study, by_image)  # same draws, same indices: the same numbers


def test_study_bootstrap_of_duplicated_studies_equals_the_image_bootstrap_of_one_copy():
    """Each study holds two copies of one image: resampling studies must give exactly the interval of the
    de-duplicated images (AUC is unchanged by duplicating every case), while resampling images as if independent
    gives a narrower, overconfident one."""
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 2, 80)
    scores = rng.normal(size=80) + labels
    twice_labels, twice_scores = np.repeat(labels, 2), np.repeat(scores, 2)
    studies = np.repeat(np.arange(80), 2).tolist()
    once = _auc_resamples(labels, scores, None, n_resamples=400)
    clustered = _auc_resamples(twice_labels, twice_scores, studies, n_resamples=400)
    np.testing.assert_allclose(clustered, once, rtol=0, atol=1e-12)
    naive = _auc_resamples(twice_labels, twice_scores, None, n_resamples=400)
    assert np.std(naive) < 0.85 * np.std(clustered)  # about 1/sqrt(2) of it


def test_a_case_without_study_is_a_study_of_its_own():
    labels = np.array([0, 1] * 10)
    scores = np.arange(20.0)
    groups = [None] * 20
    np.testing.assert_array_equal(_auc_resamples(labels, scores, groups), _auc_resamples(labels, scores, None))
    with pytest.raises(ValueError, match="one study per case"):
        _auc_resamples(labels, scores, groups[:-1])


def test_hierarchical_bootstrap_resamples_replicates_with_the_exact_distribution():
    """A statistic that depends only on the replicates: the mean of 3 replicates drawn with replacement from
    (0, 1, 2) takes each of the 27 ordered draws with probability 1/27; compare frequencies within 5 binomial sds."""
    values = np.array([0.0, 1.0, 2.0])
    n = 5400
    means = scoring.hierarchical_values(
        lambda reps, idx: np.array([values[reps].mean()]), 3, 10, lambda idx: True, n_resamples=n, seed=1
    )[:, 0]
    exact: dict[float, int] = {}
    for a in range(3):
        for b in range(3):
            for c in range(3):
                key = round((a + b + c) / 3, 9)
                exact[key] = exact.get(key, 0) + 1
    for key, count in exact.items():
        p = count / 27
        observed = np.isclose(means, key).sum()
        assert abs(observed - n * p) < 5 * np.sqrt(n * p * (1 - p)), key


def test_evaluate_scores_says_what_its_interval_resampled():
    rng = np.random.default_rng(13)
    labels = rng.integers(0, 2, 50)
    scores = rng.normal(size=50) + labels
    names = ["normal", "abnormal"]
    assert scoring.evaluate_scores(labels, scores, names, n_resamples=20)["resampled"] == "images"
    studies = [i // 2 for i in range(50)]
    report = scoring.evaluate_scores(labels, scores, names, n_resamples=20, groups=studies)
    assert report["resampled"] == "studies"
    three = rng.normal(size=(50, 3))
    multi = scoring.evaluate_scores(rng.integers(0, 3, 50), three, ["a", "b", "c"], n_resamples=20, groups=studies)
    assert multi["resampled"] == "studies" and multi["macro_auc_ci"] is not None
