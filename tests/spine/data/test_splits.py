"""spine.data.splits: no study on both sides, stratified counts, seeded and order-independent."""

import collections

import numpy as np
import pytest

from spine.data.splits import split_by_study


def make_images(seed=0, num_studies=200):
    """Studies of 1-3 images; a study is abnormal (label 1) with probability 0.3."""
    rng = np.random.default_rng(seed)
    studies, labels = [], []
    for s in range(num_studies):
        label = int(rng.random() < 0.3)
        for _ in range(rng.integers(1, 4)):
            studies.append(f"study{s:03d}")
            labels.append(label)
    return studies, labels


def test_no_study_on_both_sides_and_partition():
    studies, labels = make_images()
    train, val = split_by_study(studies, labels, 0.2, seed=1)
    assert sorted(train + val) == list(range(len(studies)))
    assert not {studies[i] for i in train} & {studies[i] for i in val}


def test_stratified_study_counts():
    studies, labels = make_images()
    train, val = split_by_study(studies, labels, 0.2, seed=1)
    per_label = collections.Counter(dict(zip(studies, labels)).values())  # studies per label
    val_per_label = collections.Counter({studies[i]: labels[i] for i in val}.values())
    for label, n in per_label.items():
        assert val_per_label[label] == round(0.2 * n)


def test_seeded_and_input_order_independent():
    studies, labels = make_images()
    a = split_by_study(studies, labels, 0.25, seed=3)
    assert a == split_by_study(studies, labels, 0.25, seed=3)
    assert a != split_by_study(studies, labels, 0.25, seed=4)
    perm = np.random.default_rng(0).permutation(len(studies))
    _, val_perm = split_by_study([studies[i] for i in perm], [labels[i] for i in perm], 0.25, seed=3)
    assert sorted(studies[perm[i]] for i in val_perm) == sorted(studies[i] for i in a[1])


def test_vector_labels_and_missing_study_ids():
    labels = [[1.0, 0.0], [0.0, 1.0]] * 10
    train, val = split_by_study([None] * 20, labels, 0.5, seed=0)
    assert len(val) == 10 and sum(labels[i][0] for i in val) == 5  # each image its own study


def test_bad_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_study(["a"], [0], 1.5)
