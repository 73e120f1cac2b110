"""metrics.inception_score: uniform predictions give 1, confident balanced predictions give the class count."""

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


def test_too_few_samples_are_refused():
    with pytest.raises(ValueError, match="N >= 10"):
        inception_score(np.full((5, 3), 1 / 3))
