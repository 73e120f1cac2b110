"""Our CUDA ops as torch.library ops (`spinegan::bias_act`, `spinegan::upfirdn2d`), checked on the CPU: the ops'
CPU kernels are the reference path, so `torch.library.opcheck` (schema, fake implementation, autograd
registration, AOT dispatch) and float64 gradient checks of the registered autograd formulas run without a GPU.
The CUDA kernels behind the same registrations are compared with the reference in test_cuda_*.py (GPU)."""

import pytest
import torch

from torch_utils.ops import bias_act, upfirdn2d
from torch_utils.ops.bias_act_cuda import bias_act_op
from torch_utils.ops.upfirdn2d_cuda import transposed_pass, upfirdn2d_op

ACTS = sorted(bias_act.activation_funcs)


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# (x shape, filter shape, up (x, y), down (x, y), padding (x0, x1, y0, y1), flip_filter, gain): upsample2d's,
# downsample2d's and an uneven cropping pass with a separable filter's row.
UPFIRDN_CASES = [
    ([2, 3, 9, 11], [4, 4], [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0),
    ([2, 3, 9, 11], [4, 4], [1, 1], [2, 2], [1, 1, 1, 1], True, 1.0),
    ([1, 2, 7, 13], [1, 6], [3, 1], [1, 2], [-1, 3, 0, -2], False, 0.5),
]


@pytest.mark.parametrize("case", UPFIRDN_CASES)
def test_upfirdn2d_op_passes_opcheck(case):
    x_shape, f_shape, up, down, padding, flip, gain = case
    x = randn(*x_shape).requires_grad_(True)
    torch.library.opcheck(upfirdn2d_op, (x, randn(*f_shape, seed=1), up, down, padding, flip, gain))


def test_upfirdn2d_op_keeps_channels_last():
    x = randn(2, 3, 9, 11).contiguous(memory_format=torch.channels_last)
    y = upfirdn2d_op(x, randn(4, 4, seed=1), [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(
        upfirdn2d_op,
        (x, randn(4, 4, seed=1), [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0),
        test_utils=("test_schema", "test_faketensor"),
    )


@pytest.mark.parametrize("case", UPFIRDN_CASES)
def test_upfirdn2d_op_equals_the_reference_with_second_derivatives(case):
    x_shape, f_shape, up, down, padding, flip, gain = case
    x = randn(*x_shape, dtype=torch.float64).requires_grad_(True)
    f = randn(*f_shape, seed=1)
    # The same float64 convolutions in the same order: the op's kernel is the reference.
    expected = upfirdn2d.upfirdn2d(
        x, f, up=tuple(up), down=tuple(down), padding=padding, flip_filter=flip, gain=gain, impl="ref"
    )
    torch.testing.assert_close(upfirdn2d_op(x, f, up, down, padding, flip, gain), expected, rtol=0, atol=0)

    def fn(img):
        return upfirdn2d_op(img, f, up, down, padding, flip, gain)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_transposed_pass_maps_the_gradient_back_to_the_input_shape():
    for x_shape, f_shape, up, down, padding, _, _ in UPFIRDN_CASES:
        x = randn(*x_shape)
        y = upfirdn2d_op(x, randn(*f_shape), up, down, padding, False, 1.0)
        t_up, t_down, t_padding = transposed_pass(
            tuple(f_shape), tuple(x.shape[2:]), tuple(y.shape[2:]), up, down, padding
        )
        assert upfirdn2d_op(y, randn(*f_shape), t_up, t_down, t_padding, True, 1.0).shape == x.shape


@pytest.mark.parametrize("act, clamp", [("lrelu", -1.0), ("tanh", 0.5), ("swish", -1.0)])
def test_bias_act_op_passes_opcheck(act, clamp):
    spec = bias_act.activation_funcs[act]
    x, b, g = randn(2, 3, 4, 4).requires_grad_(True), randn(3, seed=1).requires_grad_(True), randn(2, 3, 4, 4, seed=2)
    for mode, grad in ((0, None), (1, g.requires_grad_(True))):
        torch.library.opcheck(bias_act_op, (x, b, grad, mode, act, spec.def_alpha, spec.def_gain, clamp, 1))
    # Mode 2 has no derivative of its own (a third derivative raises): checked without gradients.
    torch.library.opcheck(
        bias_act_op, (x.detach(), b.detach(), g.detach(), 2, act, spec.def_alpha, spec.def_gain, clamp, 1)
    )
    torch.library.opcheck(bias_act_op, (x, None, None, 0, act, spec.def_alpha, spec.def_gain, clamp, 1))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [-1.0, 0.6])
def test_bias_act_op_equals_the_reference_with_second_derivatives(act, clamp):
    # The registered autograd formulas (modes 1 and 2, closed-form derivatives on the CPU) against finite
    # differences, and the value against the public reference path.
    spec = bias_act.activation_funcs[act]
    x = randn(2, 3, 5, dtype=torch.float64).requires_grad_(True)
    b = randn(3, dtype=torch.float64, seed=1).requires_grad_(True)

    def fn(x, b):
        return bias_act_op(x, b, None, 0, act, spec.def_alpha, spec.def_gain, clamp, 1)

    expected = bias_act.bias_act(x, b, act=act, clamp=None if clamp < 0 else clamp, impl="ref")
    # Float64 against float64: the same composition (the op adds the bias first, the reference may fold the gain).
    torch.testing.assert_close(fn(x, b), expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_op_refuses_a_third_derivative():
    x = randn(4, 3, dtype=torch.float64).requires_grad_(True)
    y = bias_act_op(x, None, None, 0, "tanh", 0.0, 1.0, -1.0, 1)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="up to second order"):
        torch.autograd.grad(h.sum(), x)


def test_ops_have_shapes_on_the_meta_device():
    # The fake implementations: what torch.compile traces and the meta-device checks of the training step run.
    x = torch.empty(2, 3, 9, 11, device="meta")
    assert upfirdn2d_op(x, torch.empty(4, 4, device="meta"), [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0).shape == (
        2,
        3,
        18,
        22,
    )
    assert bias_act_op(x, torch.empty(3, device="meta"), None, 0, "lrelu", 0.2, 1.4, -1.0, 1).shape == x.shape
