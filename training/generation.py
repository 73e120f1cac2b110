"""What the generation tools (generate.py, style_mixing.py, projector.py) and the synthetic datasets
(spine.evaluation.synthesize) share: the official seeded latents, class labels, the conversion of a generated image
to PIL and its atomic PNG write."""

from __future__ import annotations

import click
import numpy as np
import PIL.Image
import torch

import dnnlib


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


def class_labels(G: torch.nn.Module, class_idx: int | None, num: int, device: torch.device) -> torch.Tensor:
    """One-hot labels [num, c_dim] for a conditional network; [num, 0] for an unconditional one."""
    c = torch.zeros([num, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            print("Warning: --class is ignored: the network is unconditional")
        return c
    if class_idx is None:
        raise click.UsageError(f"the network is conditional ({G.c_dim} classes): pass --class=0..{G.c_dim - 1}")
    if not 0 <= class_idx < G.c_dim:
        raise click.UsageError(f"--class={class_idx} is out of range: the network has classes 0..{G.c_dim - 1}")
    c[:, class_idx] = 1
    return c


def save_png(image: PIL.Image.Image, path: str) -> None:
    with dnnlib.atomic_write(path, "wb") as f:
        image.save(f, format="PNG")
