"""Bilinear grid sampling (zeros padding, align_corners=False) built from gathers.

torch.nn.functional.grid_sample's backward has no derivative of its own w.r.t. the input on current
PyTorch, which breaks R1 regularisation through geometric augmentation. Written as gathers and
products, every gradient here (of any order, w.r.t. input and grid) comes from autograd.
"""

from __future__ import annotations

import torch


def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample `input` [N, C, H, W] at `grid` [N, Ho, Wo, 2] (x, y in [-1, 1]) -> [N, C, Ho, Wo].

    Equal to F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False).
    """
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[3] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(f'grid_sample: expected input [N, C, H, W] and grid [N, Ho, Wo, 2], '
                         f'got {tuple(input.shape)} and {tuple(grid.shape)}')
    n, c, h, w = input.shape
    _, ho, wo, _ = grid.shape
    # align_corners=False: -1 and 1 are the outer edges of the border pixels.
    ix = ((grid[..., 0] + 1) * w - 1) / 2
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = ix.detach().floor(), iy.detach().floor()
    wx1, wy1 = ix - x0, iy - y0
    flat = input.reshape(n, c, h * w)
    out = 0
    for dy, wy in ((0, 1 - wy1), (1, wy1)):
        for dx, wx in ((0, 1 - wx1), (1, wx1)):
            out = out + _gather_corner(flat, x0 + dx, y0 + dy, h, w) * (wx * wy).unsqueeze(1)
    return out.reshape(n, c, ho, wo)


def _gather_corner(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """input[n, :, y, x] for integer-valued float coordinates [N, Ho, Wo]; zero outside the image."""
    n, c, _ = flat.shape
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    index = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).long().reshape(n, 1, -1).expand(n, c, -1)
    values = flat.gather(2, index).reshape(n, c, *x.shape[1:])
    return values * inside.unsqueeze(1).to(flat.dtype)
