"""spine.evaluation.downstream: the test set is read once, after every model is final; ratio and table are consistent."""

import json
import os

import numpy as np
import PIL.Image
import pytest

from spine.evaluation import downstream
from spine.evaluation.scoring import roc_auc


def write_dataset(root: str, n: int, seed: int, shift: int = 0) -> str:
    """A learnable 16x16 task: abnormal images carry a bright square; one image per study."""
    os.makedirs(root)
    rng = np.random.default_rng(seed)
    labels, images = [], []
    for i in range(n):
        label = i % 2
        img = rng.integers(0, 90, [16, 16]).astype(np.uint8)
        if label:
            img[4 + shift:10 + shift, 4:10] = 220
        fname = f"img{i:04d}.png"
        PIL.Image.fromarray(img, "L").save(os.path.join(root, fname))
        labels.append([fname, label])
        images.append(dict(file=fname, image_id=f"{seed}-{i}", study_id=f"{seed}-s{i}", split="train"))
    meta = dict(labels=labels, spinegan=dict(label_mode="abnormality", class_names=["normal", "abnormal"],
                                             images=images))
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(meta, f)
    return root


OPTIONS = downstream.DownstreamOptions(epochs=2, patience=2, batch_size=16, n_resamples=50, seed=0)


def test_test_set_is_opened_only_by_the_final_evaluation(tmp_path, monkeypatch):
    real = write_dataset(str(tmp_path / "real"), 40, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 40, seed=2, shift=2)
    test = write_dataset(str(tmp_path / "heldout"), 30, seed=3)
    events = []
    load, train = downstream.load_labelled_images, downstream.train_classifier

    def recording_load(path):
        events.append(("load", os.path.basename(path)))
        return load(path)

    def recording_train(data, options):
        assert test not in data.source
        events.append(("train", data.source))
        return train(data, options)

    monkeypatch.setattr(downstream, "load_labelled_images", recording_load)
    monkeypatch.setattr(downstream, "train_classifier", recording_train)
    results = downstream.run_downstream(real, {"gan": fake}, test, str(tmp_path / "out"), OPTIONS)

    assert events.count(("load", "heldout")) == 1 and events[-1] == ("load", "heldout")
    assert [e for e in events if e[0] == "train"] == [("train", real), ("train", fake), ("train", f"{real} + {fake}")]
    assert list(results["models"]) == ["real", "synthetic-gan", "real+synthetic-gan"]
    mixed = results["models"]["real+synthetic-gan"]
    assert mixed["num_train"] + mixed["num_val"] == 80
    assert results["test"]["num_images"] == 30
    for arm in results["models"]:
        assert (tmp_path / "out" / f"classifier-{arm}.pkl").is_file()
    table = (tmp_path / "out" / "downstream.md").read_text()
    assert "| Synthetic only (gan) |" in table and "| Real + synthetic (gan) |" in table
    ratio = results["ratios"]["synthetic-gan"]
    expected = results["models"]["synthetic-gan"]["auc"] / results["models"]["real"]["auc"]
    assert ratio["ratio"] == pytest.approx(expected) and f"{expected:.3f}" in table


def test_auc_ratio_is_paired_and_exact():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    real_scores = labels + rng.normal(0, 0.6, 200)
    fake_scores = labels + rng.normal(0, 1.2, 200)
    result = downstream.auc_ratio(labels, fake_scores, real_scores, n_resamples=300, seed=0)
    assert result["ratio"] == pytest.approx(roc_auc(labels, fake_scores) / roc_auc(labels, real_scores))
    low, high = result["ratio_ci"]
    assert low < result["ratio"] < high < 1.0
    same = downstream.auc_ratio(labels, real_scores, real_scores, n_resamples=50, seed=0)
    assert same["ratio"] == 1.0 and same["ratio_ci"] == [1.0, 1.0]  # paired: identical models never differ


def test_mismatched_synthetic_images_are_refused_before_training(tmp_path):
    real = write_dataset(str(tmp_path / "real"), 10, seed=1)
    big = str(tmp_path / "big")
    os.makedirs(big)
    for i in range(4):
        PIL.Image.fromarray(np.zeros([32, 32], np.uint8), "L").save(f"{big}/img{i}.png")
    with open(f"{big}/dataset.json", "w") as f:
        json.dump({"labels": [[f"img{i}.png", i % 2] for i in range(4)]}, f)
    with pytest.raises(ValueError, match="differ from the real images"):
        downstream.train_arms(real, {"big": big}, OPTIONS)
