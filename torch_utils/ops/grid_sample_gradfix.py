"""Bilinear grid sampling (zeros padding, align_corners=False) with gradients of any order w.r.t. the input.

torch.nn.functional.grid_sample's backward has no derivative of its own w.r.t. the input on current
PyTorch, which breaks R1 regularisation through geometric augmentation. The sampler is linear in the input,
so when the grid needs no gradient (augmentation: the grid comes from random matrices) the input gradient
is the adjoint sampling (`grid_sampler_2d_backward`), itself linear in the output gradient, whose own
gradient is grid_sample again: two small autograd Functions on torch's kernels. A grid that needs a gradient
takes the slower path written as gathers and products, where every gradient comes from autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grid_sample(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample `input` [N, C, H, W] at `grid` [N, Ho, Wo, 2] (x, y in [-1, 1]) -> [N, C, Ho, Wo].

    Equal to F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False).
    """
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[3] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(
            f"grid_sample: expected input [N, C, H, W] and grid [N, Ho, Wo, 2], "
            f"got {tuple(input.shape)} and {tuple(grid.shape)}"
        )
    if not grid.requires_grad:
        return _GridSample.apply(input, grid)
    return _grid_sample_gather(input, grid)


class _GridSample(torch.autograd.Function):
    """grid_sample with a fixed grid; the input gradient is `_GridSampleAdjoint`."""

    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(grid)
        ctx.input_shape = input.shape
        return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def backward(ctx, grad):
        (grid,) = ctx.saved_tensors
        return _GridSampleAdjoint.apply(grad, grid, ctx.input_shape), None


class _GridSampleAdjoint(torch.autograd.Function):
    """The adjoint of sampling at `grid`: scatters grad [N, C, Ho, Wo] back onto an input of `input_shape`."""

    @staticmethod
    def forward(ctx, grad, grid, input_shape):
        ctx.save_for_backward(grid)
        # The input's values do not enter the input gradient of a linear map; only its shape does.
        input = grad.new_empty(()).expand(input_shape)
        return torch.ops.aten.grid_sampler_2d_backward(grad, input, grid, 0, 0, False, [True, False])[0]

    @staticmethod
    def backward(ctx, grad2):
        (grid,) = ctx.saved_tensors
        return _GridSample.apply(grad2, grid), None, None


def _grid_sample_gather(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """grid_sample from gathers and products (differentiable w.r.t. input and grid to any order)."""
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
