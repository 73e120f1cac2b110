"""Randomness for the DP mechanism from the operating system's CSPRNG (`os.urandom`).

Why: torch's and numpy's generators are deterministic given their seed, and their state is saved in checkpoints;
a DP guarantee proved for ideal Gaussian noise and ideal Poisson sampling assumes the adversary cannot predict
them. With `--dp-secure-rng=1` the noise and the sampling draws come from `os.urandom` instead (the role
Opacus's `secure_mode` plays through torchcsprng, which has no release for current PyTorch). The cost is that
such runs are not reproducible from a seed, by design.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch


def secure_uniform(num: int) -> np.ndarray:
    """`num` float64 values uniform on (0, 1], each from 53 bits of `os.urandom`."""
    words = np.frombuffer(os.urandom(8 * num), dtype=np.uint64) >> np.uint64(11)
    return (words.astype(np.float64) + 1.0) * 2.0**-53


def secure_normal(
    shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard normal values (Box-Muller on `secure_uniform` draws), shaped `shape`."""
    num = math.prod(shape)
    half = (num + 1) // 2
    u1, u2 = secure_uniform(half), secure_uniform(half)
    radius = np.sqrt(-2.0 * np.log(u1))
    values = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])[:num]
    return torch.from_numpy(values).to(dtype=dtype, device=device).reshape(shape)
