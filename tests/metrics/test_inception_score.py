"""metrics.inception_score: uniform predictions give 1, confident balanced predictions give the class count, and
the official split boundaries."""

import numpy as np
import pytest

from metrics.inception_score import inception_score


def test_uniform_predictions_score_one():
    mean, std = inception_score(np.full((50, 7), 1 / 7), num_splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_confident_balanced_predictions_score_the_class_count():
    probs = np.eye(4)[np.tile(np.arange(4), 20)]  # each split of 8 holds every class twice
    mean, std = inception_score(probs, num_splits=10)
    assert mean == pytest.approx(4.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_matches_the_kl_definition():
    rng = np.random.RandomState(0)
    logits = rng.randn(30, 5) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for part in (probs[:10], probs[10:20], probs[20:]):
        py = part.mean(0)
        scores.append(np.exp(np.mean([np.sum(p * np.log(p / py)) for p in part])))
    mean, std = inception_score(probs, num_splits=3)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12) and std == pytest.approx(np.std(scores), rel=1e-9)


def reference_is(probs: np.ndarray, num_splits: int) -> tuple[float, float]:
    """The official definition, written out: split i is samples [i * N // S, (i + 1) * N // S); per split,
    exp of the mean over samples of KL(p(y|x) || mean p(y)); mean and population std over splits."""
    n = len(probs)
    scores = []
    for i in range(num_splits):
        part = probs[i * n // num_splits : (i + 1) * n // num_splits]
        marginal = part.mean(axis=0)
        kl = [sum(p[c] * (np.log(p[c]) - np.log(marginal[c])) for c in range(len(p))) for p in part]
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def test_uneven_splits_follow_the_official_boundaries():
    # 25 samples in 10 splits: the official boundaries give sizes 2, 3, 2, 3, ...; np.array_split would give
    # 3, 3, 3, 3, 3, 2, 2, 2, 2, 2 and another score.
    rng = np.random.RandomState(1)
    logits = rng.randn(25, 6) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = reference_is(probs, 10)
    # float64 sums of 25 x 6 terms, then exp: agreement to a few hundred ulps.
    assert inception_score(probs, 10) == pytest.approx(expected, rel=1e-12)
    array_split_mean = np.mean([reference_is(part, 1)[0] for part in np.array_split(probs, 10)])
    assert abs(array_split_mean - expected[0]) > 1e-3


def test_too_few_samples_are_refused():
    with pytest.raises(ValueError, match="N >= 10"):
        inception_score(np.full((5, 3), 1 / 3))
