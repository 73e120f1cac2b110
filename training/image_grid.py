"""Snapshot image grids: which reals to show, and writing a batch as one tiled PNG."""

from __future__ import annotations

import os

import numpy as np
import PIL.Image

import dnnlib


def grid_shape(resolution: int) -> tuple[int, int]:
    """(columns, rows) as the official loop picks them for a 7680x4320 canvas."""
    gw = int(np.clip(7680 // resolution, 7, 32))
    gh = int(np.clip(4320 // resolution, 4, 32))
    return gw, gh


def choose_grid_indices(labels: np.ndarray | None, num_images: int, gw: int, gh: int, seed: int) -> list[int]:
    """Dataset indices for a gw x gh grid: a seeded shuffle; with labels, each row shows one class."""
    order = np.random.RandomState(seed).permutation(num_images)
    if labels is None or labels.size == 0 or labels.shape[1] == 0:
        return [int(order[i % num_images]) for i in range(gw * gh)]
    groups: dict[tuple, list[int]] = {}
    for idx in order:
        groups.setdefault(tuple(labels[idx].tolist()), []).append(int(idx))
    keys = sorted(groups)
    indices = []
    for y in range(gh):
        group = groups[keys[y % len(keys)]]
        start = (y // len(keys)) * gw  # later rows of the same class show further images of it
        indices += [group[(start + x) % len(group)] for x in range(gw)]
    return indices


def save_image_grid(img: np.ndarray, path: str | os.PathLike, drange: tuple[float, float],
                    grid_size: tuple[int, int]) -> None:
    """Tile NCHW images row-major into one PNG ('L' for 1 channel, 'RGB' for 3), written atomically."""
    lo, hi = drange
    gw, gh = grid_size
    n, c, h, w = img.shape
    if n != gw * gh or c not in (1, 3):
        raise ValueError(f"image grid {path}: got {n} images of {c} channels for a {gw}x{gh} grid "
                         f"(need {gw * gh} images of 1 or 3 channels)")
    img = (np.asarray(img, dtype=np.float32) - lo) * (255 / (hi - lo))
    img = np.rint(img).clip(0, 255).astype(np.uint8)
    img = img.reshape(gh, gw, c, h, w).transpose(0, 3, 1, 4, 2).reshape(gh * h, gw * w, c)
    pil = PIL.Image.fromarray(img[:, :, 0], "L") if c == 1 else PIL.Image.fromarray(img, "RGB")
    with dnnlib.atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")
