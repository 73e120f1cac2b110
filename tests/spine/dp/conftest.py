"""A tiny labelled dataset with study ids (16 gray 32x32 images, two per study) for the DP tests."""

import json
import os

import numpy as np
import PIL.Image
import pytest


@pytest.fixture
def dp_dataset(tmp_path) -> str:
    path = str(tmp_path / "ds")
    os.makedirs(path)
    rng = np.random.RandomState(0)
    n = 16
    for i in range(n):
        PIL.Image.fromarray(rng.randint(0, 255, [32, 32]).astype(np.uint8), "L").save(f"{path}/img{i:02d}.png")
    images = [dict(file=f"img{i:02d}.png", image_id=str(i), study_id=f"s{i // 2}") for i in range(n)]
    with open(f"{path}/dataset.json", "w") as f:
        json.dump({"labels": [[f"img{i:02d}.png", i % 2] for i in range(n)], "spinegan": {"images": images}}, f)
    return path
