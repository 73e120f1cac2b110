"""conv2d / conv_transpose2d whose backward can skip the weight gradient, differentiable to any order.

R1 and path-length regularisation differentiate the network output with respect to its *input*
(`create_graph=True`) and never use the weight gradient of that first backward pass. Inside
`no_weight_gradients()` the backward of these convolutions does not compute it; the input gradient
stays a differentiable function of the weights, so the penalty still trains them.

Only public APIs are used (`torch.ops.aten.convolution_backward`, which has its own derivative), so
there are no version checks and no private cuDNN entry points.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

IntOrPair = int | Sequence[int]

# Read by the backward pass, which may run on autograd's device threads: a module flag, not a
# thread-local, for the same reason torch's own global modes are.
_weight_gradients_disabled = False


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """Within this context, backward passes through our convolutions skip the weight gradient."""
    global _weight_gradients_disabled
    previous = _weight_gradients_disabled
    _weight_gradients_disabled = previous or disable
    try:
        yield
    finally:
        _weight_gradients_disabled = previous


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    dilation: IntOrPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv2d that honours no_weight_gradients()."""
    if not _records_graph(input, weight, bias):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return _Convolution.apply(
        input,
        weight,
        bias,
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
        False,
        (0, 0),
        groups,
    )


def conv_transpose2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    output_padding: IntOrPair = 0,
    groups: int = 1,
    dilation: IntOrPair = 1,
) -> torch.Tensor:
    """torch.nn.functional.conv_transpose2d that honours no_weight_gradients()."""
    if not _records_graph(input, weight, bias):
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _Convolution.apply(
        input,
        weight,
        bias,
        _pair(stride, "stride"),
        _pair(padding, "padding"),
        _pair(dilation, "dilation"),
        True,
        _pair(output_padding, "output_padding"),
        groups,
    )


def _records_graph(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record this call (otherwise the plain functional op is enough)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _pair(value: IntOrPair, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, str) or len(value) != 2:
        raise ValueError(f"conv2d_gradfix: {name} must be an int or a pair of ints, got {value!r}")
    return int(value[0]), int(value[1])


class _Convolution(torch.autograd.Function):
    """A (transposed) 2-D convolution whose backward respects no_weight_gradients()."""

    generate_vmap_rule = True  # new-style (setup_context) so torch.func transforms (DP-SGD) can trace it

    @staticmethod
    def forward(x, w, b, stride, padding, dilation, transposed, output_padding, groups):
        if transposed:
            return F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, stride, padding, dilation, transposed, output_padding, groups = inputs
        ctx.save_for_backward(x, w)
        ctx.conf = (None if b is None else list(b.shape), stride, padding, dilation, transposed, output_padding, groups)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        bias_sizes, stride, padding, dilation, transposed, output_padding, groups = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        mask = [need_x, need_w and not _weight_gradients_disabled, need_b]
        # convolution_backward has its own derivative, so gradients of any order follow.
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad,
            x,
            w,
            bias_sizes,
            list(stride),
            list(padding),
            list(dilation),
            transposed,
            list(output_padding),
            groups,
            mask,
        )
        return gx, gw, gb, None, None, None, None, None, None
