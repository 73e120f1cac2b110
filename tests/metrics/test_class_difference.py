"""metrics.class_difference: the class-mean difference's r and magnitude ratio, with closed-form answers."""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from metrics_helpers import ReplayGenerator, tiny_generator

from metrics import metric_main
from metrics.class_difference import class_difference, difference_agreement

PATTERN = np.arange(64, dtype=np.float64).reshape(8, 8) % 7 - 3  # a zero-mean-ish pattern of -3..3 grey levels


def write_classes(path: str, normal: np.ndarray, abnormal: np.ndarray, num_per_class: int = 3) -> str:
    """Identical images within each class: the class means are the images themselves, whatever the count."""
    os.makedirs(os.path.join(path, "00000"), exist_ok=True)
    labels = []
    for i in range(2 * num_per_class):
        name = f"00000/img{i:08d}.png"
        image = (normal, abnormal)[i % 2]
        PIL.Image.fromarray(image.astype(np.uint8), "L").save(os.path.join(path, name))
        labels.append([name, i % 2])
    with open(os.path.join(path, "dataset.json"), "w") as f:
        json.dump(dict(labels=labels, spinegan=dict(label_mode="abnormality", class_names=["normal", "abnormal"])), f)
    return path


def folder(path: str) -> dict:
    return dict(class_name="training.dataset.ImageFolderDataset", path=path, use_labels=True)


def between(metric: str, data: str, data2: str) -> dict:
    return metric_main.calc_metric(
        metric=metric, dataset_kwargs=folder(data), dataset2_kwargs=folder(data2), progress=False
    ).results


def test_agreement_of_known_pairs():
    assert difference_agreement(PATTERN, 2 * PATTERN) == pytest.approx((1.0, 2.0), abs=1e-12)
    assert difference_agreement(PATTERN, -0.5 * PATTERN) == pytest.approx((-1.0, 0.5), abs=1e-12)
    # Orthogonal zero-mean images: r = 0; the ratio of their RMS in closed form.
    a, b = np.array([1.0, -1.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0, -3.0])
    assert difference_agreement(a, b) == pytest.approx((0.0, 3.0), abs=1e-12)
    assert difference_agreement(np.zeros(4), a) == (None, None)  # no real difference: nothing to compare with
    means = np.stack([np.full((2, 2), 10.0), np.full((2, 2), 10.0) + np.eye(2)])
    np.testing.assert_array_equal(class_difference(means), np.eye(2))


def test_two_datasets_in_closed_form(tmp_path):
    flat = np.full((8, 8), 100.0)
    real = write_classes(str(tmp_path / "real"), flat, flat + PATTERN)
    assert between("class_diff6", real, real) == pytest.approx(dict(class_diff6_r=1.0, class_diff6_rms_ratio=1.0))
    twice = write_classes(str(tmp_path / "twice"), flat + 5, flat + 5 + 2 * PATTERN, num_per_class=2)
    assert between("class_diff4", real, twice) == pytest.approx(dict(class_diff4_r=1.0, class_diff4_rms_ratio=2.0))
    flipped = write_classes(str(tmp_path / "flipped"), flat, flat - PATTERN)
    assert between("class_diff6", real, flipped) == pytest.approx(dict(class_diff6_r=-1.0, class_diff6_rms_ratio=1.0))


def test_a_generator_that_draws_the_real_classes_agrees_exactly(tmp_path):
    flat = np.full((8, 8), 60.0)
    real = write_classes(str(tmp_path / "real"), flat, flat + 3 * PATTERN)
    G = ReplayGenerator(real, by_class=True)  # every sample is its class's one image
    results = metric_main.calc_metric(
        metric="class_diff10", G=G, dataset_kwargs=folder(real), progress=False, device=torch.device("cpu")
    ).results
    assert results == pytest.approx(dict(class_diff10_r=1.0, class_diff10_rms_ratio=1.0), abs=1e-12)
    assert sum(G.served.values()) == 10
    with pytest.raises(ValueError, match="conditional generator with 2 classes"):
        metric_main.calc_metric(metric="class_diff4", G=tiny_generator(c_dim=0), dataset_kwargs=folder(real))
