"""spine.evaluation.pooling: several synthetic datasets as one, byte-exact pixels, labels and study ids kept apart."""

import json
from pathlib import Path

import bad_inputs
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from spine.classifier.data import load_labelled_images
from spine.evaluation import pooling, synthesize
from training.dataset import ImageFolderDataset
from training.networks import Generator


def synthetic_dataset(path: Path, seed: int, counts: list[int], class_names: list[str] | None = None) -> str:
    """A real synthetic dataset of a tiny random generator (counts[k] images of class k)."""
    torch.manual_seed(seed)
    G = Generator(
        z_dim=8,
        c_dim=len(counts),
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    ).eval()
    names = class_names or ["normal", "abnormal"]
    synthesize.write_synthetic_dataset(
        [G],
        synthesize.SynthesisPlan.from_counts(counts, first_seed=0),
        str(path),
        names,
        "abnormality",
        dict(network_pkl=f"g{seed}.pkl"),
        dict(seed=seed),
    )
    return str(path)


def test_pooled_dataset_is_the_members_in_order(tmp_path):
    members = {
        "a": synthetic_dataset(tmp_path / "a.zip", 0, [3, 2]),
        "b": synthetic_dataset(tmp_path / "b.zip", 1, [1, 4]),
    }
    meta = pooling.pool_datasets(members, str(tmp_path / "pooled.zip"))["spinegan"]
    pooled = load_labelled_images(str(tmp_path / "pooled.zip"))
    parts = [load_labelled_images(path) for path in members.values()]
    assert torch.equal(pooled.images, torch.cat([p.images for p in parts]))  # lossless, member by member
    assert pooled.labels.tolist() == [0, 0, 0, 1, 1] + [0, 1, 1, 1, 1]
    assert meta["class_counts"] == dict(normal=4, abnormal=6) and meta["num_images"] == 10
    assert pooled.study_ids[:2] == ["a/synthetic-seed0", "a/synthetic-seed1"]
    assert pooled.study_ids[5] == "b/synthetic-seed0"  # same latent seed, other study
    assert len(set(pooled.study_ids)) == 10
    assert meta["synthetic"] is True
    assert meta["pooled_from"]["b"]["generator"] == dict(network_pkl="g1.pkl")
    assert meta["pooled_from"]["a"]["sha256"] == parts[0].sha256
    dataset = ImageFolderDataset(str(tmp_path / "pooled.zip"), use_labels=True)  # trains like any dataset
    assert len(dataset) == 10 and np.array_equal(dataset[7][1], [0, 1])


def test_mismatched_members_and_an_existing_dest_are_refused(tmp_path):
    a = synthetic_dataset(tmp_path / "a.zip", 0, [2, 2])
    other = synthetic_dataset(tmp_path / "c.zip", 2, [2, 2], class_names=["negative", "positive"])
    with pytest.raises(ValueError, match=r"--member c=.*c\.zip: labels abnormality \['negative', 'positive'\]"):
        pooling.pool_datasets({"a": a, "c": other}, str(tmp_path / "p.zip"))
    with pytest.raises(ValueError, match="at least two member datasets, got 1"):
        pooling.pool_datasets({"a": a}, str(tmp_path / "p.zip"))
    with pytest.raises(ValueError, match="already exists"):
        pooling.pool_datasets({"a": a, "b": a}, a)
    assert not (tmp_path / "p.zip").exists()


@pytest.mark.parametrize(
    "members, message",
    [
        (["a={a}"], "at least two member datasets, got 1"),
        (["a={a}", "b={missing}"], "no such dataset"),
        (["a={a}", "{a}"], "expected NAME=PATH"),
        (["a={a}", "a={a}"], "'a' given twice"),
    ],
)
def test_cli_bad_inputs_get_one_line_and_write_nothing(tmp_path, members, message):
    a = synthetic_dataset(tmp_path / "a.zip", 0, [2, 2])
    before = bad_inputs.tree(tmp_path)
    args = [item for member in members for item in ("--member", member.format(a=a, missing=tmp_path / "x.zip"))]
    result = CliRunner().invoke(pooling.main, args + ["--dest", str(tmp_path / "p.zip")])
    bad_inputs.assert_refused(result, message, 1 if "got 1" in message else 2, tmp_path, before)


def test_cli_pools_and_says_what_it_wrote(tmp_path):
    a, b = (synthetic_dataset(tmp_path / f"{n}.zip", i, [2, 1]) for i, n in enumerate("ab"))
    result = CliRunner().invoke(
        pooling.main, ["--member", f"a={a}", "--member", f"b={b}", "--dest", str(tmp_path / "p")]
    )
    assert result.exit_code == 0, result.output
    assert "6 images from 2 datasets" in result.output
    assert json.loads((tmp_path / "p" / "dataset.json").read_text())["spinegan"]["class_counts"] == dict(
        normal=4, abnormal=2
    )


def test_a_pool_at_one_members_count_is_a_seeded_class_balanced_subset(tmp_path):
    members = {
        "a": synthetic_dataset(tmp_path / "a.zip", 0, [3, 3]),
        "b": synthetic_dataset(tmp_path / "b.zip", 1, [3, 3]),
    }
    pooling.pool_datasets(members, str(tmp_path / "pooled.zip"))
    meta = pooling.subsample_dataset(str(tmp_path / "pooled.zip"), str(tmp_path / "matched.zip"), 3, seed=30)
    pool = load_labelled_images(str(tmp_path / "pooled.zip"))
    matched = load_labelled_images(str(tmp_path / "matched.zip"))
    assert torch.bincount(matched.labels).tolist() == [3, 3] == list(meta["spinegan"]["class_counts"].values())
    # every image is one of the pool's, pixels, label and study id exact, in the pool's order
    rows = {(bytes(img.numpy().tobytes()), int(k), s) for img, k, s in zip(pool.images, pool.labels, pool.study_ids)}
    picked = list(zip(matched.images, matched.labels, matched.study_ids))
    assert all((bytes(img.numpy().tobytes()), int(k), s) in rows for img, k, s in picked)
    order = [pool.study_ids.index(s) for s in matched.study_ids]
    assert order == sorted(order)
    members_of = [image["member"] for image in meta["spinegan"]["images"]]
    assert members_of == [s.split("/")[0] for s in matched.study_ids] and set(members_of) <= {"a", "b"}
    assert meta["spinegan"]["synthetic"] and meta["spinegan"]["subsampled_from"]["seed"] == 30
    again = pooling.subsample_dataset(str(tmp_path / "pooled.zip"), str(tmp_path / "again.zip"), 3, seed=30)
    other = pooling.subsample_dataset(str(tmp_path / "pooled.zip"), str(tmp_path / "other.zip"), 3, seed=31)
    assert again["spinegan"]["images"] == meta["spinegan"]["images"]
    assert [i["study_id"] for i in other["spinegan"]["images"]] != [i["study_id"] for i in meta["spinegan"]["images"]]


def test_a_subsample_larger_than_a_class_is_refused_and_writes_nothing(tmp_path):
    source = synthetic_dataset(tmp_path / "a.zip", 0, [2, 4])
    with pytest.raises(Exception, match="2 images of class 'normal', fewer than 3"):
        pooling.subsample_dataset(source, str(tmp_path / "matched.zip"), 3, seed=30)
    assert not (tmp_path / "matched.zip").exists()
