"""Snapshot image grids: which reals to show, and writing a batch as one tiled PNG.

The official grids tile the images at their own size. A 32x32 grid is then a 256x128 picture in which nobody can
tell the classes apart, so tiles smaller than `LEGIBLE_TILE` are enlarged by a whole factor (nearest neighbour:
pixels stay pixels), and a conditional grid names each row's class in a margin on the left.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

import dnnlib

LEGIBLE_TILE = 64  # pixels: tiles smaller than this are enlarged for the snapshot grids
LABEL_FONT_PX = 14


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


def row_names(labels: np.ndarray, gw: int, class_names: Sequence[str] | None) -> list[str]:
    """The class of each grid row (rows hold one class each, see `choose_grid_indices`): its name from the
    dataset's class names, else 'class k'; a multi-hot label lists its classes."""
    names = []
    for label in labels[::gw]:
        hot = [int(k) for k in np.flatnonzero(label)]
        names.append(
            "+".join(class_names[k] if class_names and k < len(class_names) else f"class {k}" for k in hot) or "none"
        )
    return names


def save_image_grid(
    img: np.ndarray,
    path: str | os.PathLike,
    drange: tuple[float, float],
    grid_size: tuple[int, int],
    row_labels: Sequence[str] | None = None,
    min_tile: int = 1,
) -> None:
    """Tile NCHW images row-major into one PNG ('L' for 1 channel, 'RGB' for 3), written atomically. Tiles are
    enlarged by the smallest whole factor that makes them `min_tile` pixels; `row_labels` go in a left margin."""
    lo, hi = drange
    gw, gh = grid_size
    n, c, h, w = img.shape
    if n != gw * gh or c not in (1, 3):
        raise ValueError(
            f"image grid {path}: got {n} images of {c} channels for a {gw}x{gh} grid "
            f"(need {gw * gh} images of 1 or 3 channels)"
        )
    img = (np.asarray(img, dtype=np.float32) - lo) * (255 / (hi - lo))
    img = np.rint(img).clip(0, 255).astype(np.uint8)
    scale = max(1, math.ceil(min_tile / h))
    img = img.repeat(scale, axis=2).repeat(scale, axis=3)
    h, w = h * scale, w * scale
    img = img.reshape(gh, gw, c, h, w).transpose(0, 3, 1, 4, 2).reshape(gh * h, gw * w, c)
    pil = PIL.Image.fromarray(img[:, :, 0], "L") if c == 1 else PIL.Image.fromarray(img, "RGB")
    if row_labels is not None:
        pil = with_row_labels(pil, row_labels, h)
    with dnnlib.atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")


def with_row_labels(grid: PIL.Image.Image, labels: Sequence[str], row_height: int) -> PIL.Image.Image:
    """`grid` with a white margin on the left holding each row's label, vertically centred on its row."""
    font = PIL.ImageFont.load_default(size=LABEL_FONT_PX)
    probe = PIL.ImageDraw.Draw(grid)
    margin = max(int(probe.textlength(label, font=font)) for label in labels) + 2 * LABEL_FONT_PX // 2
    out = PIL.Image.new(grid.mode, (grid.width + margin, grid.height), 255 if grid.mode == "L" else (255, 255, 255))
    out.paste(grid, (margin, 0))
    draw = PIL.ImageDraw.Draw(out)
    for row, label in enumerate(labels):
        draw.text(
            (LABEL_FONT_PX // 2, row * row_height + row_height // 2),
            label,
            font=font,
            anchor="lm",
            fill=0 if grid.mode == "L" else (0, 0, 0),
        )
    return out
