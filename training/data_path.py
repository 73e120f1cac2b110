"""The loop's real images: which dataset indices each iteration trains on, loaded and converted once.

Two ways to choose them; the run's plug-ins pick one (`LoopPlugins.real_sampling`, see `training.loop_plugins`):
  * shuffled batches (the default, `ShuffledBatches`): the official endless shuffled stream
    (`torch_utils.misc.InfiniteSampler`), `batch_per_rank` images per iteration and process, loaded by a
    DataLoader (workers, pinning). The stream position is a counter, so a resumed run continues it exactly.
  * drawn batches (`DrawnBatches`): an `IndexSampler` supplied by a plug-in (DP-SGD's Poisson sampling of
    images or studies) draws each iteration's indices: a varying number of images, grouped into *units* that
    must stay together. Draws use the global RNG, which the loop checkpoints, so they happen in order in this
    process when the iteration asks for its batch, never prefetched.
Either way a batch arrives as a `RealBatch`: float32 NCHW in [-1, 1] on the device (`to_unit_range` is the one
uint8 -> [-1, 1] conversion), and `RealBatch.split` cuts it into the iteration's accumulation rounds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from torch_utils.misc import InfiniteSampler


@dataclasses.dataclass
class SampledBatch:
    """Dataset indices of one draw, the unit of each index (0..num_units-1, contiguous) and the number of units."""

    indices: np.ndarray
    unit_index: np.ndarray
    num_units: int


class IndexSampler(Protocol):
    """Draws one iteration's dataset indices (e.g. `spine.dp.sampling.PoissonSampler`)."""

    def sample(self) -> SampledBatch: ...


@dataclasses.dataclass
class RealBatch:
    """Real images [N, C, H, W] in [-1, 1], labels [N, c_dim], and the unit of each image ([N] int64, units
    numbered 0..k-1 in order) or None when every image stands alone (shuffled batches)."""

    img: torch.Tensor
    c: torch.Tensor
    units: torch.Tensor | None = None

    def split(self, num_rounds: int) -> list[RealBatch]:
        """`num_rounds` consecutive parts of about equal size; a unit is never split (its images go to the round
        where its first image falls), so with units a part may be larger, smaller or empty."""
        n = self.img.shape[0]
        if self.units is None:
            starts = np.arange(n)
        else:
            first = np.flatnonzero(np.diff(self.units.cpu().numpy(), prepend=-1))  # first image of each unit
            starts = np.repeat(first, np.diff(np.append(first, n)))
        round_of = starts * num_rounds // max(n, 1)
        sizes = np.bincount(round_of, minlength=num_rounds).tolist()
        parts = zip(
            self.img.split(sizes),
            self.c.split(sizes),
            self.units.split(sizes) if self.units is not None else itertools.repeat(None),
        )
        return [RealBatch(img, c, _renumbered(units)) for img, c, units in parts]


def _renumbered(units: torch.Tensor | None) -> torch.Tensor | None:
    """Consecutive unit numbers of one round, from 0."""
    return units - units[0] if units is not None and len(units) else units


def to_unit_range(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images (as stored) -> float32 in [-1, 1] on `device`, the networks' range. The copy does not wait for
    the device (from the DataLoader's pinned batches it overlaps the queued work); the uint8 batch crosses the bus
    and is converted there."""
    return images.to(device, non_blocking=True).to(torch.float32) / 127.5 - 1


class _SkipSampler(torch.utils.data.Sampler):
    """The underlying infinite index stream with the first `start` indices skipped (exact resume position)."""

    def __init__(self, base: torch.utils.data.Sampler, start: int):
        self.base = base
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.base), self.start, None)


class ShuffledBatches:
    """The official sampling: this process's share of a seeded endless shuffle, a fixed number per iteration."""

    def __init__(
        self,
        dataset: Any,
        data_loader_kwargs: dict,
        rank: int,
        world: int,
        seed: int,
        batch_per_rank: int,
        start_index: int,
        device: torch.device,
    ):
        sampler = InfiniteSampler(dataset=dataset, rank=rank, num_replicas=world, seed=seed)
        loader = torch.utils.data.DataLoader(
            dataset=dataset, sampler=_SkipSampler(sampler, start_index), batch_size=batch_per_rank, **data_loader_kwargs
        )
        self._batches = iter(loader)
        self._device = device

    def __next__(self) -> RealBatch:
        img, c = next(self._batches)
        return RealBatch(to_unit_range(img, self._device), c.to(self._device, non_blocking=True))


class DrawnBatches:
    """Batches whose indices an `IndexSampler` draws, loaded in this process in draw order."""

    def __init__(self, dataset: Any, sampler: IndexSampler, device: torch.device):
        self._dataset = dataset
        self._sampler = sampler
        self._device = device

    def __next__(self) -> RealBatch:
        draw = self._sampler.sample()
        items = [self._dataset[int(i)] for i in draw.indices]
        img = np.stack([im for im, _ in items]) if items else np.zeros([0, *self._dataset.image_shape], np.uint8)
        c = np.stack([lab for _, lab in items]) if items else np.zeros([0, self._dataset.label_dim], np.float32)
        return RealBatch(
            to_unit_range(torch.from_numpy(img), self._device),
            torch.from_numpy(c.astype(np.float32)).to(self._device),
            torch.from_numpy(draw.unit_index.astype(np.int64)).to(self._device),
        )
