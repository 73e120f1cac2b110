"""What generate.py and the synthetic datasets (spine.evaluation.synthesize) share: the official seeded latents and
the conversion of a generated image to PIL."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch


def seed_latents(seeds: list[int], z_dim: int) -> np.ndarray:
    """The official latents: np.random.RandomState(seed).randn(1, z_dim) per seed."""
    return np.concatenate([np.random.RandomState(seed).randn(1, z_dim) for seed in seeds])


def to_pil(img: torch.Tensor) -> PIL.Image.Image:
    """One CHW image in [-1, 1] -> 'L' (1 channel) or 'RGB' (3 channels) PIL image."""
    arr = (img.permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
    if arr.shape[2] == 1:
        return PIL.Image.fromarray(arr[:, :, 0], "L")
    if arr.shape[2] == 3:
        return PIL.Image.fromarray(arr, "RGB")
    raise ValueError(f"cannot save an image with {arr.shape[2]} channels (expected 1 or 3)")
