"""conv2d_gradfix: same values and gradients as torch's convolutions, weight gradients skipped on request."""

import numpy as np
import ops_reference as ref
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix


def _tensors(seed, transposed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w_shape = (4, 3, 3, 2) if transposed else (6, 2, 3, 2)  # groups=2 either way
    w = torch.randn(*w_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, generator=gen, requires_grad=True)
    return x, w, b


CONV_ARGS = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
TCONV_ARGS = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 1))


def test_conv2d_matches_bruteforce_correlation():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((6, 2, 3, 2))
    out = conv2d_gradfix.conv2d(torch.tensor(x, requires_grad=True), torch.tensor(w), groups=2)
    np.testing.assert_allclose(out.detach().numpy(), ref.conv2d(x, w, groups=2), atol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
def test_values_and_gradients_match_torch(transposed):
    x, w, b = _tensors(1, transposed)
    ours, theirs = (
        (conv2d_gradfix.conv_transpose2d, F.conv_transpose2d) if transposed else (conv2d_gradfix.conv2d, F.conv2d)
    )
    args = TCONV_ARGS if transposed else CONV_ARGS
    y_ours, y_theirs = ours(x, w, b, **args), theirs(x, w, b, **args)
    torch.testing.assert_close(y_ours, y_theirs, rtol=0, atol=1e-12)
    assert y_ours.grad_fn is not None and "Convolution" in type(y_ours.grad_fn).__name__
    g = torch.randn_like(y_ours)
    for a, e in zip(torch.autograd.grad(y_ours, (x, w, b), g), torch.autograd.grad(y_theirs, (x, w, b), g)):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
def test_gradcheck_and_gradgradcheck(transposed):
    x, w, b = _tensors(2, transposed)
    x, w = x[:1, :, :3, :3].detach().requires_grad_(), w.detach().requires_grad_()
    op = conv2d_gradfix.conv_transpose2d if transposed else conv2d_gradfix.conv2d
    args = TCONV_ARGS if transposed else CONV_ARGS
    assert torch.autograd.gradcheck(lambda x, w, b: op(x, w, b, **args), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda x, w, b: op(x, w, b, **args), (x, w, b))


def test_no_weight_gradients_skips_only_the_weight_and_restores():
    x, w, b = _tensors(3, False)
    y = conv2d_gradfix.conv2d(x, w, b, **CONV_ARGS)
    gx_ref, gw_ref = torch.autograd.grad(y.sum(), (x, w), retain_graph=True)
    with conv2d_gradfix.no_weight_gradients():
        with conv2d_gradfix.no_weight_gradients(disable=False):  # nesting never re-enables
            gx, gw, gb = torch.autograd.grad(y.sum(), (x, w, b), retain_graph=True, allow_unused=True)
    assert gw is None and gb is not None
    torch.testing.assert_close(gx, gx_ref)
    with pytest.raises(KeyError):
        with conv2d_gradfix.no_weight_gradients():
            raise KeyError("boom")
    (gw_after,) = torch.autograd.grad(y.sum(), (w,))  # context left: weight gradients are back
    torch.testing.assert_close(gw_after, gw_ref)


def test_r1_style_penalty_still_trains_weights():
    """grad of ||d out / d x||^2 w.r.t. w is unchanged when the inner backward skips weight gradients."""
    x, w, b = _tensors(4, False)

    def penalty_grad(conv, skip):
        y = conv(x, w, b, **CONV_ARGS)
        with conv2d_gradfix.no_weight_gradients(disable=skip):
            (gx,) = torch.autograd.grad(y.square().sum(), (x,), create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (w,))[0]

    torch.testing.assert_close(
        penalty_grad(conv2d_gradfix.conv2d, True), penalty_grad(F.conv2d, False), rtol=1e-12, atol=1e-12
    )


def test_without_autograd_it_is_the_plain_op():
    x = torch.randn(1, 2, 4, 4)
    w = torch.randn(3, 2, 3, 3)
    y = conv2d_gradfix.conv2d(x, w, padding=1)
    assert y.grad_fn is None
    assert torch.equal(y, F.conv2d(x, w, padding=1))  # the same kernel on the same float32 inputs
    with pytest.raises(ValueError, match="padding"):
        conv2d_gradfix.conv2d(x, w.requires_grad_(), padding="same")
