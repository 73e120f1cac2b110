"""Poisson sampling of privacy units (images, or studies = patients' examinations) for DP-SGD.

`PoissonSampling` is DP's `real_sampling` plug-in (`training.loop_plugins`): the training loop calls it with the
dataset and draws and loads every iteration's real batch with the `PoissonSampler` it returns
(`training.data_path.DrawnBatches`).

Every step includes each unit independently with probability q, which is what the accountant's
"subsampled Gaussian" assumes (a shuffled fixed-size batch is not). With unit='study' all images of a sampled
study enter the batch together and their gradients are summed before clipping, so the guarantee protects a whole
study; the dataset must say which study each image belongs to (`image_info(i)['study_id']`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spine.dp.secure_random import secure_uniform
from training.data_path import SampledBatch

UNITS = ("image", "study")


def study_groups(dataset: Any) -> list[list[int]]:
    """Dataset indices grouped by study id (first-seen order); raises if any image lacks a study id."""
    groups: dict[str, list[int]] = {}
    for i in range(len(dataset)):
        study = dataset.image_info(i).get("study_id")
        if study is None:
            raise ValueError(
                f"--dp-unit=study: image {i} ({dataset.image_info(i).get('file')}) has no study_id in "
                f"dataset.json's spinegan.images; rebuild the dataset with study ids or use "
                f"--dp-unit=image"
            )
        groups.setdefault(str(study), []).append(i)
    return list(groups.values())


def unit_groups(dataset: Any, unit: str) -> list[list[int]]:
    """One list of dataset indices per privacy unit."""
    if unit not in UNITS:
        raise ValueError(f"--dp-unit={unit!r}: expected one of {UNITS}")
    if unit == "image":
        return [[i] for i in range(len(dataset))]
    return study_groups(dataset)


class PoissonSampler:
    """Each call includes each unit with probability `sample_rate`, using the global torch RNG (checkpointed),
    or with `secure` the operating system's CSPRNG (spine.dp.secure_random)."""

    def __init__(self, groups: Sequence[Sequence[int]], sample_rate: float, secure: bool = False):
        if not groups:
            raise ValueError("PoissonSampler: the dataset has no images")
        if not 0 < sample_rate <= 1:
            raise ValueError(f"PoissonSampler: sample rate must be in (0, 1], got {sample_rate}")
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.sample_rate = float(sample_rate)
        self.secure = secure

    @property
    def num_units(self) -> int:
        return len(self.groups)

    @property
    def num_images(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def expected_batch_size(self) -> float:
        """Expected number of images per draw (the normaliser of the private gradient sum)."""
        return self.sample_rate * self.num_images

    def sample(self) -> SampledBatch:
        draws = torch.from_numpy(secure_uniform(self.num_units)) if self.secure else torch.rand([self.num_units])
        chosen = torch.nonzero(draws < self.sample_rate).flatten().tolist()
        if not chosen:
            return SampledBatch(np.zeros([0], np.int64), np.zeros([0], np.int64), 0)
        indices = np.concatenate([self.groups[u] for u in chosen])
        unit_index = np.concatenate([np.full(len(self.groups[u]), k) for k, u in enumerate(chosen)])
        return SampledBatch(indices, unit_index.astype(np.int64), len(chosen))


class PoissonSampling:
    """The `real_sampling` plug-in: dataset -> `PoissonSampler` of its privacy units at rate `sample_rate`.

    `num_images` is the size of the dataset it will be given, known before the loop builds it, so that the DP
    update can be told the expected batch size (its normaliser) up front; another dataset is refused.
    """

    def __init__(self, unit: str, sample_rate: float, num_images: int, secure: bool = False):
        self.unit = unit
        self.sample_rate = float(sample_rate)
        self.num_images = int(num_images)
        self.secure = secure

    @property
    def expected_batch_size(self) -> float:
        """Expected number of images per draw, as `PoissonSampler.expected_batch_size`."""
        return self.sample_rate * self.num_images

    def __call__(self, dataset: Any) -> PoissonSampler:
        if len(dataset) != self.num_images:
            raise ValueError(f"DP sampling was set up for {self.num_images} images, the dataset has {len(dataset)}")
        return PoissonSampler(unit_groups(dataset, self.unit), self.sample_rate, secure=self.secure)
