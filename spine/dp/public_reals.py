"""Declared-public real images beside the private ones in D's DP-SGD step (train.py --dp-public-reals=PATH).

Under DP-SGD alone D's real term is a noisy, clipped sum: on the validation draw it lost the image distribution
(one image per class, docs/RESULTS.md R). Images declared public (e.g. normal radiographs of an open set) carry
no privacy cost, so D can read them every step as without DP: their term, softplus(-D(aug(x))) plus R1 on the
lazy steps, is a plain batch mean added to the private term's noisy sum. It keeps D's picture of real anatomy
sharp, while what only the private images show (the findings) reaches D through the clipped and noised term and
is paid for in the account as before. The public term reads no private record, so it costs nothing; the
account's statement lists the images as declared public.

Every round draws as many public images as it renders fakes, uniformly with replacement from the global torch
RNG (checkpointed, so a resumed run draws what an uninterrupted one would). The images are held in memory as
uint8.
"""

from __future__ import annotations

import numpy as np
import torch

from spine.dp.guards import DPConfigError
from training.data_path import to_unit_range
from training.dataset import DatasetError, ImageFolderDataset

FLAG = "--dp-public-reals"


class PublicReals:
    """The public images (uint8 [N, C, H, W]) and D's labels for them ([N, c_dim]; c_dim 0 for an unconditional D)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.ndim != 4 or images.dtype != torch.uint8 or len(images) == 0:
            raise ValueError(
                f"PublicReals: expected uint8 images [N>0, C, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if labels.ndim != 2 or len(labels) != len(images):
            raise ValueError(f"PublicReals: expected labels [{len(images)}, c_dim], got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def draw(self, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` images in [-1, 1] and their labels, drawn uniformly with replacement (global torch RNG)."""
        index = torch.randint(len(self.images), [count])
        return to_unit_range(self.images[index], device), self.labels[index].to(device)


def open_public_reals(path: str, resolution: int, num_channels: int, c_dim: int) -> ImageFolderDataset:
    """The dataset at `path` (a folder or zip), checked for a run at `resolution` with `num_channels` and a D with
    `c_dim` label entries (the dataset's own labels, which must then have that many) without reading every image:
    DPConfigError names the flag and what was expected."""
    try:
        dataset = ImageFolderDataset(path, use_labels=c_dim > 0)
    except DatasetError as exc:
        raise DPConfigError(f"{FLAG}={path}: {exc}") from None
    if dataset.resolution != resolution or dataset.num_channels != num_channels:
        raise DPConfigError(
            f"{FLAG}={path}: {dataset.resolution}x{dataset.resolution} images with {dataset.num_channels} "
            f"channel(s); the training data has {resolution}x{resolution} with {num_channels}"
        )
    # Integer labels index the training data's classes; a public set that shows only the first ones (normal
    # studies: class 0) is one-hot over fewer entries, widened by load_public_reals.
    widens = dataset.has_onehot_labels and dataset.label_dim < c_dim
    if dataset.label_dim != c_dim and not widens:
        raise DPConfigError(
            f"{FLAG}={path}: labels of {dataset.label_dim} entries; the conditional D takes {c_dim} "
            "(label the public images with the training data's classes, or train with --d-cond=0)"
        )
    return dataset


def load_public_reals(path: str, resolution: int, num_channels: int, c_dim: int) -> PublicReals:
    """The images of `path`, checked as `open_public_reals` does, held in memory with D's labels for them."""
    dataset = open_public_reals(path, resolution, num_channels, c_dim)
    images = np.stack([dataset[i][0] for i in range(len(dataset))])
    labels = np.zeros([len(dataset), c_dim], np.float32)
    if c_dim > 0:
        labels[:, : dataset.label_dim] = np.stack([dataset.get_label(i) for i in range(len(dataset))])
    dataset.close()
    return PublicReals(torch.from_numpy(images), torch.from_numpy(labels))
