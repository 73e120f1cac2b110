"""Tiny gray datasets for the DP tests: `dp_dataset` (16 labelled 32x32 images with study ids, two per study) and
`image_folder` for others (public images: another size, no labels, one class)."""

import json
import os

import numpy as np
import PIL.Image
import pytest


def write_images(path: str, n: int = 16, res: int = 32, labels: list[int] | None = None, seed: int = 0) -> str:
    """`n` random gray images at `res` in the folder `path`, with study ids and (if given) integer labels."""
    os.makedirs(path)
    rng = np.random.RandomState(seed)
    for i in range(n):
        PIL.Image.fromarray(rng.randint(0, 255, [res, res]).astype(np.uint8), "L").save(f"{path}/img{i:02d}.png")
    images = [dict(file=f"img{i:02d}.png", image_id=str(i), study_id=f"s{i // 2}") for i in range(n)]
    meta = {"spinegan": {"images": images}}
    if labels is not None:
        meta["labels"] = [[f"img{i:02d}.png", label] for i, label in enumerate(labels)]
    with open(f"{path}/dataset.json", "w") as f:
        json.dump(meta, f)
    return path


@pytest.fixture
def dp_dataset(tmp_path) -> str:
    return write_images(str(tmp_path / "ds"), labels=[i % 2 for i in range(16)])


@pytest.fixture
def image_folder(tmp_path):
    """write_images into tmp_path/<name>: image_folder(name, n=..., res=..., labels=..., seed=...) -> its path."""
    return lambda name, **kwargs: write_images(str(tmp_path / name), **kwargs)
