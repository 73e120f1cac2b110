"""The labels the generator is asked for in each phase: by default those of random training images.

`DatasetLabels` draws them. On the CPU it is the official draw, image by image with the global NumPy RNG (the CPU
runs' random streams are unchanged by #15). On a GPU the dataset's label table lives on the device and the
indices come from the device's torch RNG, so a phase's labels cost no host work and, above all, no blocking
host-to-device copy (a plain `.to('cuda')` of host memory waits for the device to finish its queue). Both draw
each label independently and uniformly over the training images. A plug-in's labels (`LoopPlugins.fake_labels`,
n -> NumPy) are moved to the device without waiting (`to_device`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float32 host array as a tensor on `device`; to a GPU through pinned memory, without waiting for it."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class DatasetLabels:
    """n -> [n, c_dim] float32 labels of n training images drawn uniformly with replacement, on `device`.

    `on_device` (default: whether `device` is a GPU) picks the device-side draw; tests set it on the CPU.
    """

    def __init__(self, training_set: Any, device: torch.device, on_device: bool | None = None):
        self._training_set = training_set
        self._device = torch.device(device)
        self._on_device = self._device.type == "cuda" if on_device is None else on_device
        self._table = None
        if self._on_device:
            labels = [training_set.get_label(i) for i in range(len(training_set))]
            table = np.stack(labels).astype(np.float32).reshape(len(training_set), -1)
            self._table = torch.from_numpy(table).to(self._device)

    def __call__(self, n: int) -> torch.Tensor:
        if self._table is not None:
            return self._table[torch.randint(len(self._table), [n], device=self._device)]
        labels = [self._training_set.get_label(np.random.randint(len(self._training_set))) for _ in range(n)]
        return torch.from_numpy(np.stack(labels)).to(self._device)


def fake_label_sampler(
    training_set: Any, device: torch.device, fake_label_fn: Callable[[int], np.ndarray] | None
) -> Callable[[int], torch.Tensor]:
    """The loop's n -> labels on the device: a plug-in's `fake_labels` (`fake_label_fn`), else `DatasetLabels`."""
    if fake_label_fn is None:
        return DatasetLabels(training_set, device)
    return lambda n: to_device(fake_label_fn(n), device)
