"""Class-mean figures against a population reference: the detail of a mean image, the agreement of class means."""

import json
import os

import numpy as np
import PIL.Image
import pytest

from spine.evaluation.class_means import (
    REFERENCE,
    REFERENCE_HALVES,
    half_class_means,
    joined_means,
    load_means,
    markdown_table,
    mean_detail,
    reference_agreement,
    reference_ceiling,
    reference_figures,
    save_means,
)


def pattern(size: int = 16, seed: int = 0) -> np.ndarray:
    """A random 0-255 image: sharp structure at every scale."""
    return np.random.default_rng(seed).uniform(0, 255, [size, size])


def test_the_mean_over_every_pose_of_a_pattern_has_no_detail_and_one_pose_keeps_it():
    image = pattern()
    shifts = [np.roll(image, (dy, dx), axis=(0, 1)) for dy in range(16) for dx in range(16)]
    assert mean_detail(np.mean(shifts, axis=0)) == pytest.approx(0.0, abs=1e-9)  # a constant image
    assert mean_detail(image) > 20  # uniform 0-255 pixels: sd 74, most of it finer than 2 pixels


def test_mean_detail_scales_with_contrast_and_ignores_brightness():
    image = pattern()
    assert mean_detail(3 * image) == pytest.approx(3 * mean_detail(image), rel=1e-12)
    assert mean_detail(image + 40) == pytest.approx(mean_detail(image), rel=1e-9)


def reference_means() -> dict[str, np.ndarray]:
    return dict(normal=pattern(seed=1), abnormal=pattern(seed=2))


def test_a_set_drawn_as_the_reference_reads_one_in_every_figure():
    ref = reference_means()
    assert reference_agreement(ref, dict(ref)) == pytest.approx(dict(r=1.0, rms_ratio=1.0, detail_ratio=1.0))


def test_a_doubled_class_difference_keeps_r_and_doubles_the_rms_ratio():
    ref = reference_means()
    doubled = dict(normal=ref["normal"], abnormal=ref["normal"] + 2 * (ref["abnormal"] - ref["normal"]))
    got = reference_agreement(ref, doubled)
    assert got["r"] == pytest.approx(1.0) and got["rms_ratio"] == pytest.approx(2.0)


def test_sharper_class_means_than_the_reference_read_a_detail_ratio_above_one():
    sharp = reference_means()
    spread = {name: np.mean([np.roll(m, s, axis=1) for s in range(-2, 3)], axis=0) for name, m in sharp.items()}
    expected = np.mean([mean_detail(sharp[n]) / mean_detail(spread[n]) for n in sharp])
    assert reference_agreement(spread, sharp)["detail_ratio"] == pytest.approx(expected, rel=1e-12)
    assert expected > 1.5


def test_a_missing_class_leaves_every_figure_undefined():
    ref = reference_means()
    assert reference_agreement(ref, dict(normal=ref["normal"])) == dict(r=None, rms_ratio=None, detail_ratio=None)


def write_dataset(root: str, images: list[np.ndarray], labels: list[int]) -> str:
    os.makedirs(root)
    entries = []
    for i, (image, label) in enumerate(zip(images, labels)):
        PIL.Image.fromarray(image.astype(np.uint8), "L").save(os.path.join(root, f"img{i:03d}.png"))
        entries.append([f"img{i:03d}.png", label])
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(dict(labels=entries, spinegan=dict(label_mode="abnormality", class_names=["normal", "abnormal"])), f)
    return root


def test_reference_figures_of_datasets_count_their_images_and_match_a_copy_exactly(tmp_path):
    images = [np.rint(pattern(seed=s)) for s in range(6)]
    reference = write_dataset(str(tmp_path / "ref"), images, [0, 1, 0, 1, 0, 1])
    copy = write_dataset(str(tmp_path / "copy"), images[:4], [0, 1, 0, 1])
    figures = reference_figures(reference, {"itself": reference, "four of it": copy})
    assert figures["itself"] == pytest.approx(dict(images=6, r=1.0, rms_ratio=1.0, detail_ratio=1.0))
    assert figures["four of it"]["images"] == 4 and figures["four of it"]["r"] < 1
    assert markdown_table(figures).splitlines()[2] == "| itself | 6 | 1.00 | 1.00 | 1.00 |"


def test_saved_means_round_trip_exactly_and_reference_figures_save_every_sets_means(tmp_path):
    means = {REFERENCE: reference_means(), "real test images": dict(normal=pattern(seed=3), abnormal=pattern(seed=4))}
    save_means(tmp_path / "m.npz", means)
    loaded = load_means(tmp_path / "m.npz")
    assert list(loaded) == list(means) and all(list(loaded[k]) == ["normal", "abnormal"] for k in loaded)
    assert all(np.array_equal(loaded[k][c], means[k][c]) for k in means for c in means[k])
    images = [np.rint(pattern(seed=s)) for s in range(4)]
    reference = write_dataset(str(tmp_path / "ref"), images, [0, 1, 0, 1])
    reference_figures(reference, {"itself": reference}, tmp_path / "figures.npz")
    saved = load_means(tmp_path / "figures.npz")
    assert set(saved) == {REFERENCE, "itself"}
    assert np.allclose(saved["itself"]["abnormal"], (images[1] + images[3]) / 2, rtol=0, atol=1e-12)


def test_the_halves_are_each_classs_even_and_odd_numbered_images(tmp_path):
    images = [np.rint(pattern(seed=s)) for s in range(7)]
    labels = [0, 1, 0, 1, 0, 0, 1]  # class 0: images 0, 2, 4, 5; class 1: images 1, 3, 6
    first, second, counts = half_class_means(write_dataset(str(tmp_path / "ref"), images, labels))
    expected_first = dict(normal=(images[0] + images[4]) / 2, abnormal=(images[1] + images[6]) / 2)
    expected_second = dict(normal=(images[2] + images[5]) / 2, abnormal=images[3])
    for got, expected in ((first, expected_first), (second, expected_second)):
        assert list(got) == ["normal", "abnormal"]
        assert all(np.allclose(got[c], expected[c], rtol=0, atol=1e-12) for c in expected)
    assert counts == dict(normal=(2, 2), abnormal=(2, 1))
    joined = joined_means(first, second, counts)
    assert np.allclose(joined["normal"], (images[0] + images[2] + images[4] + images[5]) / 4, rtol=0, atol=1e-12)
    assert np.allclose(joined["abnormal"], (images[1] + images[3] + images[6]) / 3, rtol=0, atol=1e-12)


def test_reference_figures_read_the_references_halves_against_each_other(tmp_path):
    images = [np.rint(pattern(seed=s)) for s in range(8)]
    reference = write_dataset(str(tmp_path / "ref"), images, [0, 1] * 4)
    figures = reference_figures(reference, {"itself": reference})
    difference_first = (images[1] + images[5]) / 2 - (images[0] + images[4]) / 2
    difference_second = (images[3] + images[7]) / 2 - (images[2] + images[6]) / 2
    halves = figures[REFERENCE_HALVES]
    assert halves["images"] == 4
    expected_r = np.corrcoef(difference_first.ravel(), difference_second.ravel())[0, 1]
    assert halves["r"] == pytest.approx(expected_r, abs=1e-9)
    rms = np.sqrt(np.mean(difference_second**2)) / np.sqrt(np.mean(difference_first**2))
    assert halves["rms_ratio"] == pytest.approx(rms, rel=1e-9)
    assert list(figures) == ["itself", REFERENCE_HALVES]  # the sets' rows first, as markdown_table lists them


def test_the_reference_ceiling_is_spearman_browns_square_root():
    assert reference_ceiling(0.78) == pytest.approx(np.sqrt(1.56 / 1.78), rel=1e-12)  # 0.936
    assert reference_ceiling(1.0) == 1.0 and reference_ceiling(1 / 3) == pytest.approx(np.sqrt(0.5), rel=1e-12)
    assert reference_ceiling(0.0) is None and reference_ceiling(-0.2) is None and reference_ceiling(None) is None
