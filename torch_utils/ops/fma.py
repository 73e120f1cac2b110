"""Fused multiply-add a * b + c with broadcasting, in one kernel (torch.addcmul).

Used by the modulated convolution's noise/bias paths, where the three operands broadcast against
each other; the backward sums each gradient back to its operand's shape.
"""

from __future__ import annotations

import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Return a * b + c (broadcast), differentiable to any order."""
    return _FusedMultiplyAdd.apply(a, b, c)


class _FusedMultiplyAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, c):
        ctx.save_for_backward(a, b)
        ctx.c_shape = c.shape
        return torch.addcmul(c, a, b)

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        # sum_to_size undoes broadcasting (leading and size-1 dimensions); built from differentiable
        # ops, so double backward works.
        da = (dout * b).sum_to_size(a.shape) if ctx.needs_input_grad[0] else None
        db = (dout * a).sum_to_size(b.shape) if ctx.needs_input_grad[1] else None
        dc = dout.sum_to_size(ctx.c_shape) if ctx.needs_input_grad[2] else None
        return da, db, dc
