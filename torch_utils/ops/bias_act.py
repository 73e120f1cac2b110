"""Fused bias + activation + gain + clamp: y = clamp(act(x + b) * gain, -clamp, clamp).

StyleGAN layers apply this sequence after every convolution and fully-connected layer, so it is one op
with one name. The reference path below is plain PyTorch (differentiable to any order by autograd);
a fused CUDA kernel with the same semantics lives in `bias_act_cuda.py`, a one-pass CPU kernel for the
piecewise-linear activations in `bias_act_cpu.py`, each chosen by `custom_ops.resolve_impl`.
"""

from __future__ import annotations

import torch

from .. import custom_ops
from . import bias_act_cpu
from .activations import ActivationSpec, activation_funcs


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Add bias `b` along dimension `dim` of `x`, apply activation `act`, scale by `gain`, clamp to +-`clamp`.

    `alpha`/`gain` default to the activation's table entry; `clamp=None` means no clamping. The gradient is
    zero where the output is clamped. `impl` is None/'auto', 'ref', 'cuda' or 'cpu' (see `custom_ops.resolve_impl`;
    the CPU kernel computes linear, relu and lrelu, the reference path the rest).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bias_act: x must be a torch.Tensor, got {type(x).__name__}")
    if act not in activation_funcs:
        raise ValueError(f"bias_act: unknown act {act!r}; expected one of {sorted(activation_funcs)}")
    if b is not None:
        if b.ndim != 1 or not 0 <= dim < x.ndim or b.shape[0] != x.shape[dim]:
            raise ValueError(
                f"bias_act: b must be 1-D with x.shape[dim] = {x.shape[dim] if 0 <= dim < x.ndim else '?'}"
                f" entries (dim={dim}, x.shape={tuple(x.shape)}), got b.shape={tuple(b.shape)}"
            )
    if clamp is not None and clamp < 0:
        raise ValueError(f"bias_act: clamp must be None or >= 0, got {clamp}")
    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = None if clamp is None else float(clamp)
    chosen = custom_ops.resolve_impl("bias_act", impl, x)
    if chosen == "cuda":
        from .bias_act_cuda import bias_act_cuda

        return bias_act_cuda(x, b, dim, act, alpha, gain, clamp)
    if chosen == "cpu" and bias_act_cpu.supports(x, b, dim, spec, alpha, gain):
        return bias_act_cpu.bias_act_cpu(x, b, dim, spec.neg_slope(alpha), gain, clamp)
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)


def _bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None,
    dim: int,
    spec: ActivationSpec,
    alpha: float,
    gain: float,
    clamp: float | None,
) -> torch.Tensor:
    """Plain PyTorch composition, differentiable to any order, with as few full-size temporaries as possible.

    For lrelu/relu/linear the gain is folded into the bias addition (one fused add for x * g + b * g);
    without autograd the remaining steps overwrite that temporary instead of allocating new ones.
    """
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)))
    if not inplace and spec.neg_slope is not None and spec.neg_slope(alpha) >= 0 and gain > 0:
        return _PiecewiseLinearBiasAct.apply(x, b, dim, spec, alpha, gain, clamp)
    pre_gain = gain if spec.homogeneous and gain > 0 else 1.0
    y = _scaled_add_bias(x, b, dim, pre_gain)
    own = y is not x  # y is a temporary of ours, free to overwrite
    y = spec.func_(y, alpha) if inplace and own and spec.func_ is not None else spec.func(y, alpha)
    own = y is not x
    if gain != pre_gain:
        y = y.mul_(gain) if inplace and own else y * gain
        own = True
    if clamp is not None:
        y = y.clamp_(-clamp, clamp) if inplace and own else y.clamp(-clamp, clamp)
    return y


def _scaled_add_bias(x: torch.Tensor, b: torch.Tensor | None, dim: int, scale: float) -> torch.Tensor:
    """(x + b) * scale in one op, b broadcast along `dim`; returns x itself when there is nothing to do."""
    if b is None:
        return x if scale == 1 else x * scale
    b = b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    return x + b if scale == 1 else torch.add(b * scale, x, alpha=scale)


class _PiecewiseLinearBiasAct(torch.autograd.Function):
    """bias_act for linear/relu/lrelu when autograd records it: the forward runs in place on one temporary and
    keeps only the output; the gradient is dy times a slope read off the output (gain, or the negative slope
    times gain, and 0 where the output is clamped), in three fused passes instead of the six or so of the
    plain composition's backward. Those passes are linear in dy and differentiable, so gradients of any order
    follow (the second derivative of a piecewise linear map is 0)."""

    generate_vmap_rule = True  # new-style (setup_context) so torch.func transforms (DP-SGD) can trace it

    @staticmethod
    def forward(x, b, dim, spec, alpha, gain, clamp):
        with torch.no_grad():
            y = _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
        return y.clone() if y is x else y

    @staticmethod
    def setup_context(ctx, inputs, output):
        _x, b, dim, spec, alpha, gain, clamp = inputs
        ctx.save_for_backward(output)
        ctx.conf = (dim, spec.neg_slope(alpha), gain, clamp)
        ctx.b_shape = None if b is None else b.shape

    @staticmethod
    def backward(ctx, dy):
        y = ctx.saved_tensors[0].detach()  # the slope is piecewise constant: no gradient through y
        dim, neg_slope, gain, clamp = ctx.conf
        # Each step is one fused kernel that autograd can differentiate again (linear in its first argument),
        # in the order of the plain composition's backward so that the results are the same to the bit.
        dz = dy
        if clamp is not None:
            dz = torch.ops.aten.hardtanh_backward(dz, y, -clamp, clamp)  # 0 where |y| = clamp (clamped)
        if neg_slope != 1:
            dz = torch.ops.aten.leaky_relu_backward(dz, y, neg_slope, True)
        dx = dz * gain if gain != 1 else dz
        db = None
        if ctx.b_shape is not None and ctx.needs_input_grad[1]:
            db = dz.sum([i for i in range(dz.ndim) if i != dim])
            db = db * gain if gain != 1 else db
        return dx, db, None, None, None, None, None
