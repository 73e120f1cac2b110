"""bias_act on our CUDA kernel as the torch.library op `spinegan::bias_act`, with first and second derivatives.

Same semantics as the reference path in `bias_act.py`: y = clamp(act(x + b) * gain, -clamp, clamp),
zero gradient where clamped. The kernel, like the op, has three modes on z = x + b: 0 the output y, 1 a given
gradient times dy/dz, 2 a given gradient times d2y/dz2. Each mode's autograd formula calls the next mode, so
first and second derivatives work (R1 and path-length regularisation); the third raises. The backward saves the
input x (not the output), so the clamp mask and every derivative are recomputed exactly from x + b.

The op has a CUDA kernel (the plugin), a CPU kernel (the reference path, its derivatives by torch.func, so that
`torch.library.opcheck` and the gradient checks run on a CPU) and a fake implementation (shapes only). The public
`bias_act` on a CPU calls the reference path directly, not this op: same results, no dispatch overhead.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable

import torch

from .. import custom_ops, misc
from .activations import activation_funcs

_SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
_FORWARD, _FIRST_GRAD, _SECOND_GRAD = 0, 1, 2


def load_plugin() -> types.ModuleType:
    """Builds (once per machine) and imports the bias_act extension."""
    return custom_ops.get_plugin(
        "spinegan_bias_act_plugin",
        sources=[os.path.join(_SOURCE_DIR, name) for name in ("bias_act.cpp", "bias_act.cu")],
        headers=[os.path.join(_SOURCE_DIR, "bias_act.h")],
    )


_EMPTY_CACHE: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _empty(like: torch.Tensor) -> torch.Tensor:
    """A cached empty tensor standing for "no bias" / "no grad" in the kernel call."""
    key = (like.dtype, like.device)
    if key not in _EMPTY_CACHE:
        _EMPTY_CACHE[key] = torch.empty([0], dtype=like.dtype, device=like.device)
    return _EMPTY_CACHE[key]


# ----------------------------------------------------------------------------------------------------
# The op. `clamp` < 0 means none, as in the kernel; `b` and `grad` may be None (no bias; mode 0).


@torch.library.custom_op("spinegan::bias_act", mutates_args=())
def bias_act_op(
    x: torch.Tensor,
    b: torch.Tensor | None,
    grad: torch.Tensor | None,
    mode: int,
    act: str,
    alpha: float,
    gain: float,
    clamp: float,
    dim: int,
) -> torch.Tensor:
    """One kernel call (see module docstring); this is the CPU kernel (the reference path)."""
    spec = activation_funcs[act]
    z = x if b is None else x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    if mode == _FORWARD:
        y = spec.func(z, alpha) * gain
        if clamp >= 0:
            y = y.clamp(-clamp, clamp)
    else:
        first, second = _ACT_DERIVATIVES[act](z, alpha)
        slope = (first if mode == _FIRST_GRAD else second) * gain
        if clamp >= 0:  # zero where clamped, as torch.clamp's gradient
            slope = slope * (spec.func(z, alpha) * gain).abs().le(clamp)
        y = grad * slope
    return torch.empty_like(x).copy_(y)  # the plugin's layout, never an alias of x


def _sigmoid_derivatives(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sigma(z) and its first two derivatives."""
    s = torch.sigmoid(z)
    d1 = s * (1 - s)
    return s, d1, d1 * (1 - 2 * s)


def _piecewise(z: torch.Tensor, below: torch.Tensor | float, above: float) -> torch.Tensor:
    return torch.where(z > 0, torch.full_like(z, above), below)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # torch.nn.functional.selu's constants

# act -> (z, alpha) -> (act'(z), act''(z)) in closed form, for the derivative modes of the CPU kernel (torch.func
# inside a custom op's kernel does not compose with opcheck's dispatch modes).
_ACT_DERIVATIVES: dict[str, Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]] = {
    "linear": lambda z, alpha: (torch.ones_like(z), torch.zeros_like(z)),
    "relu": lambda z, alpha: (_piecewise(z, 0.0, 1.0), torch.zeros_like(z)),
    "lrelu": lambda z, alpha: (_piecewise(z, alpha, 1.0), torch.zeros_like(z)),
    "tanh": lambda z, alpha: (1 - torch.tanh(z) ** 2, -2 * torch.tanh(z) * (1 - torch.tanh(z) ** 2)),
    "sigmoid": lambda z, alpha: _sigmoid_derivatives(z)[1:],
    "elu": lambda z, alpha: (_piecewise(z, torch.exp(z), 1.0), _piecewise(z, torch.exp(z), 0.0)),
    "selu": lambda z, alpha: (
        _SELU_SCALE * _piecewise(z, _SELU_ALPHA * torch.exp(z), 1.0),
        _SELU_SCALE * _piecewise(z, _SELU_ALPHA * torch.exp(z), 0.0),
    ),
    # F.softplus is the identity above its threshold (20).
    "softplus": lambda z, alpha: (
        torch.where(z > 20, 1.0, _sigmoid_derivatives(z)[0]),
        torch.where(z > 20, 0.0, _sigmoid_derivatives(z)[1]),
    ),
    "swish": lambda z, alpha: _swish_derivatives(z),
}


def _swish_derivatives(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dz z sigma(z) = sigma + z sigma', and its derivative 2 sigma' + z sigma''."""
    s, d1, d2 = _sigmoid_derivatives(z)
    return s + z * d1, 2 * d1 + z * d2


@bias_act_op.register_kernel("cuda")
def _bias_act_cuda_kernel(x, b, grad, mode, act, alpha, gain, clamp, dim):
    return load_plugin().bias_act(
        x,
        _empty(x) if b is None else b,
        _empty(x) if grad is None else grad,
        mode,
        activation_funcs[act].cuda_idx,
        alpha,
        gain,
        clamp,
        dim,
    )


@bias_act_op.register_fake
def _bias_act_fake(x, b, grad, mode, act, alpha, gain, clamp, dim):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, b, grad, mode, act, alpha, gain, clamp, dim = inputs
    ctx.save_for_backward(x, b, grad)
    ctx.conf = (mode, act, alpha, gain, clamp, dim)


def _backward(ctx, d_out):
    x, b, grad = ctx.saved_tensors
    mode, act, alpha, gain, clamp, dim = ctx.conf
    need_x, need_b, need_grad = ctx.needs_input_grad[:3]

    def call(g: torch.Tensor, m: int) -> torch.Tensor:
        return bias_act_op(x, b, g, m, act, alpha, gain, clamp, dim)

    def to_bias(t: torch.Tensor | None) -> torch.Tensor | None:
        return t.sum([i for i in range(t.ndim) if i != dim]) if t is not None and b is not None and need_b else None

    if mode == _FORWARD:
        dx = call(d_out, _FIRST_GRAD)
        return dx, to_bias(dx), None, None, None, None, None, None, None
    if mode == _FIRST_GRAD:  # out = grad * y'(z): linear in grad, and y''(z) for x and b
        d_grad = call(d_out, _FIRST_GRAD) if need_grad else None
        d_x = None
        # Activations without a second derivative (linear, relu, lrelu) have y'' = 0: None means zero.
        if activation_funcs[act].has_2nd_grad and (need_x or need_b):
            d_x = call(d_out * grad, _SECOND_GRAD)
        return d_x, to_bias(d_x), d_grad, None, None, None, None, None, None
    raise NotImplementedError("bias_act: the op has derivatives up to second order; use impl='ref' for higher orders")


bias_act_op.register_autograd(_backward, setup_context=_setup_context)


def bias_act_cuda(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, alpha: float, gain: float, clamp: float | None
) -> torch.Tensor:
    """bias_act on the CUDA kernel; arguments already resolved by `bias_act.bias_act` (alpha, gain floats)."""
    if act not in activation_funcs:
        raise ValueError(f"bias_act: unknown act {act!r}; expected one of {sorted(activation_funcs)}")
    if b is not None and b.dtype != x.dtype:  # Same promotion as the reference's x + b.
        dtype = torch.result_type(x, b)
        x, b = x.to(dtype), b.to(dtype)
    if not misc.is_dense(x):
        x = x.contiguous()
    b = None if b is None else b.contiguous()
    return bias_act_op(
        x, b, None, _FORWARD, act, float(alpha), float(gain), -1.0 if clamp is None else float(clamp), dim
    )
