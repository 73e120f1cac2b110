"""tools/snapshot_skill.py: a snapshot's synthetic-only classifier is scored on the real training images."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from click.testing import CliRunner

from training.networks import Generator
from training.serialization import save_network_snapshot

_SPEC = importlib.util.spec_from_file_location(
    "snapshot_skill", Path(__file__).resolve().parents[2] / "tools" / "snapshot_skill.py"
)
snapshot_skill = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(snapshot_skill)


def write_real(root: str, n: int) -> str:
    """16x16 labelled 'real' images, one study each: abnormal ones carry a bright square."""
    os.makedirs(root)
    rng = np.random.default_rng(0)
    labels, images = [], []
    for i in range(n):
        img = rng.integers(0, 90, [16, 16]).astype(np.uint8)
        if i % 2:
            img[4:10, 4:10] = 220
        PIL.Image.fromarray(img, "L").save(os.path.join(root, f"img{i:04d}.png"))
        labels.append([f"img{i:04d}.png", i % 2])
        images.append(dict(file=f"img{i:04d}.png", image_id=str(i), study_id=f"s{i}", split="train"))
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(
            dict(
                labels=labels,
                spinegan=dict(label_mode="abnormality", class_names=["normal", "abnormal"], images=images),
            ),
            f,
        )
    return root


def write_snapshot(tmp_path) -> Path:
    """A tiny untrained conditional generator saved as a network snapshot."""
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )
    snapshot = tmp_path / "network-snapshot-000001.pkl"
    save_network_snapshot(snapshot, G=G, D=None, G_ema=G, metadata=dict(cur_nimg=1000))
    return snapshot


def test_skill_of_a_snapshot_on_real_training_images(tmp_path):
    real = write_real(str(tmp_path / "real"), 40)
    snapshot = write_snapshot(tmp_path)
    args = [
        "--network",
        str(snapshot),
        "--real",
        real,
        "--out",
        str(tmp_path / "out"),
        "--per-class",
        "20",
        "--epochs",
        "1",
        "--patience",
        "1",
    ]
    result = CliRunner().invoke(snapshot_skill.main, args)
    assert result.exit_code == 0, result.output
    skill = json.loads((tmp_path / "out" / "skill.json").read_text())
    assert 0 <= skill["auc"] <= 1 and skill["auc_ci"][0] <= skill["auc"] <= skill["auc_ci"][1]
    assert skill["per_class"] == 20 and os.path.isfile(tmp_path / "out" / "synthetic.zip")
    assert skill["input_norm"] == "dataset"
    again = CliRunner().invoke(snapshot_skill.main, args)
    assert again.exit_code != 0 and "exists" in again.output  # never overwrites a folder


def test_arch_and_input_norm_reach_the_classifier(tmp_path, monkeypatch):
    real = write_real(str(tmp_path / "real"), 40)
    snapshot = write_snapshot(tmp_path)
    seen = []
    train = snapshot_skill.train_classifier

    def recording_train(data, options):
        seen.append((options.arch, options.input_norm))
        return train(data, options)

    monkeypatch.setattr(snapshot_skill, "train_classifier", recording_train)
    args = [
        "--network",
        str(snapshot),
        "--real",
        real,
        "--out",
        str(tmp_path / "out"),
        "--per-class",
        "20",
        "--epochs",
        "1",
        "--patience",
        "1",
        "--input-norm",
        "blurred_image",
        "--arch",
        "patch_cnn",
    ]
    result = CliRunner().invoke(snapshot_skill.main, args)
    assert result.exit_code == 0, result.output
    assert seen == [("patch_cnn", "blurred_image")]
    skill = json.loads((tmp_path / "out" / "skill.json").read_text())
    assert (skill["arch"], skill["input_norm"]) == ("patch_cnn", "blurred_image")


def test_a_synthetic_dataset_is_scored_as_it_is(tmp_path):
    real = write_real(str(tmp_path / "real"), 40)
    fake = write_real(str(tmp_path / "fake"), 20)  # stands for a pooled synthetic dataset
    result = CliRunner().invoke(
        snapshot_skill.main,
        ["--dataset", fake, "--real", real, "--out", str(tmp_path / "out"), "--epochs", "1", "--patience", "1"],
    )
    assert result.exit_code == 0, result.output
    skill = json.loads((tmp_path / "out" / "skill.json").read_text())
    assert skill["dataset"] == fake and skill["network"] is None and skill["per_class"] is None
    assert not os.path.exists(tmp_path / "out" / "synthetic.zip")  # nothing synthesised


def test_network_and_dataset_are_exclusive(tmp_path):
    real = write_real(str(tmp_path / "real"), 10)
    for extra in ([], ["--network", str(write_snapshot(tmp_path)), "--dataset", real]):
        result = CliRunner().invoke(snapshot_skill.main, ["--real", real, "--out", str(tmp_path / "out")] + extra)
        assert result.exit_code == 2 and "exactly one of --network" in result.output
        assert not (tmp_path / "out").exists()
