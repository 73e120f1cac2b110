"""The upfirdn2d CUDA kernels against a float64 brute-force definition: values and gradients of any order."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from tolerances import rounding_tol

from torch_utils import custom_ops
from torch_utils.ops.upfirdn2d_cuda import upfirdn2d_cuda

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def brute_upfirdn2d(x, f, up, down, padding, flip_filter, gain):
    """The definition in float64: zero-stuff, pad/crop, true convolution (correlation if flip_filter), subsample."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    x, f = x.double(), f.double()
    if f.ndim == 1:  # separable: the same taps on both axes
        f = f[:, None] * f[None, :]
    n, c, h, w = x.shape
    u = x.new_zeros([n, c, h * uy, w * ux])
    u[:, :, ::uy, ::ux] = x
    u = F.pad(u, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    u = u[:, :, max(-py0, 0) : u.shape[2] - max(-py1, 0), max(-px0, 0) : u.shape[3] - max(-px1, 0)]
    taps = f if flip_filter else f.flip([0, 1])
    y = F.conv2d(u, (taps * gain)[None, None].repeat(c, 1, 1, 1), groups=c)
    return y[:, :, ::dy, ::dx]


# (x shape, filter shape, up, down, padding (x0, x1, y0, y1), flip_filter, gain); the first four hit the tiled kernel.
CASES = [
    ([2, 3, 37, 70], [4, 4], (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),  # upsample2d
    ([2, 3, 37, 70], [4, 4], (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0),  # downsample2d
    ([2, 3, 37, 70], [4, 4], (1, 1), (1, 1), (2, 1, 2, 1), True, 1.0),  # filter2d
    ([2, 3, 37, 70], [3, 6], (2, 2), (1, 1), (-1, 3, 0, -2), False, 1.5),  # uneven filter, crop
    ([2, 3, 19, 23], [8], (2, 2), (1, 1), (4, 3, 4, 3), False, 4.0),  # separable 8-tap
    ([1, 4, 21, 17], [3, 5], (3, 1), (1, 2), (-1, 2, 3, -2), True, 0.5),  # generic: odd up/down per axis
    ([2, 2, 40, 36], [9, 9], (2, 2), (1, 1), (5, 4, 5, 4), False, 4.0),  # filter too large for the tiles
    ([2, 2, 12, 12], [1, 1], (1, 1), (3, 3), (0, 0, 0, 0), False, 1.0),  # plain subsampling
]
LAYOUTS = [torch.contiguous_format, torch.channels_last]


def _case_tensors(x_shape, f_shape, memory_format, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64).contiguous(memory_format=memory_format)
    f = torch.rand(f_shape, generator=gen, dtype=torch.float32) + 0.1
    return x, f / f.sum()


def _value_and_derivatives(fn, x, w, v):
    """y, d<y^2, w>/dx and the x-gradient of <that, v>: the double backward an R1 penalty runs."""
    x = x.detach().requires_grad_()
    y = fn(x)
    (g,) = torch.autograd.grad((y * y * w.to(y)).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad((g * v.to(g)).sum(), x)
    return y, g, h


def _check(case, memory_format, dtype, rtol, atol):
    x_shape, f_shape, up, down, padding, flip, gain = case
    x, f = _case_tensors(x_shape, f_shape, memory_format, seed=5)
    x = x.to(dtype)
    want_y = brute_upfirdn2d(x, f, up, down, padding, flip, gain)
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(want_y.shape, generator=gen, dtype=torch.float64)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    got = _value_and_derivatives(
        lambda t: upfirdn2d_cuda(t, f.cuda(), up, down, padding, flip, gain), x.cuda(), w.cuda(), v.cuda()
    )
    want = _value_and_derivatives(lambda t: brute_upfirdn2d(t, f, up, down, padding, flip, gain), x.double(), w, v)
    assert got[0].dtype == dtype and got[0].shape == want[0].shape
    assert got[0].is_contiguous(memory_format=memory_format)
    for name, g, e in zip(["y", "dx", "d2x"], got, want):
        scale = e.abs().max().item()
        torch.testing.assert_close(g.double().cpu(), e, rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("memory_format", LAYOUTS)
def test_fp32_matches_definition(case, memory_format):
    # y, dx and d2x pass through up to 3 float32 filters of up to 9 x 9 = 81 taps; f is positive with sum 1, so
    # the sums of |terms| stay below the largest value (`scale` in _check).
    _check(case, memory_format, torch.float32, rtol=1e-5, atol=rounding_tol(torch.float32, 3 * 81))


@pytest.mark.parametrize("case", CASES[:5])
@pytest.mark.parametrize("memory_format", LAYOUTS)
def test_fp16_within_half_precision(case, memory_format):
    # Accumulated in float32 and rounded to float16 once per result (y, dx, d2x) and per derived input:
    # about 10 float16 roundings, rounding_tol(float16, 10) = 9.8e-3.
    _check(case, memory_format, torch.float16, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[4], CASES[5]])
def test_float64_gradcheck_and_gradgradcheck(case):
    _, f_shape, up, down, padding, flip, gain = case
    x, f = _case_tensors([1, 2, 6, 5], f_shape, torch.contiguous_format, seed=7)
    x = x.cuda().requires_grad_()

    def fn(t):
        return upfirdn2d_cuda(t, f.cuda(), up, down, padding, flip, gain)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_many_planes_stride_over_the_grid():
    """More planes than one grid dimension holds (65535) must all be computed by the tiled kernel."""
    x = torch.randn([70000, 1, 4, 4], device="cuda")
    f = torch.full([2, 2], 0.25)
    got = upfirdn2d_cuda(x, f.cuda(), (1, 1), (2, 2), (0, 0, 0, 0), False, 1.0)
    want = brute_upfirdn2d(x.cpu(), f, (1, 1), (2, 2), (0, 0, 0, 0), False, 1.0)
    # 2 x 2 taps of 0.25 (exact) on N(0, 1): 4 float32 roundings on |x| < 6.
    torch.testing.assert_close(got.double().cpu(), want, rtol=0, atol=rounding_tol(torch.float32, 4, 6))


def test_public_api_matches_reference(caplog, monkeypatch):
    from torch_utils.ops import upfirdn2d

    monkeypatch.delenv(custom_ops.IMPL_ENV_VAR, raising=False)
    custom_ops.reset_state()
    x = torch.randn([2, 5, 16, 16], device="cuda")
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=x.device)
    with caplog.at_level(logging.INFO, logger=custom_ops.__name__):
        for op in (upfirdn2d.upsample2d, upfirdn2d.downsample2d, upfirdn2d.filter2d):
            # Two float32 evaluations of 4 x 4 taps (and up to 2x up/down): 16-32 roundings on |x| < 6.
            torch.testing.assert_close(op(x, f), op(x, f, impl="ref"), rtol=0, atol=rounding_tol(torch.float32, 32, 6))
    assert any(r.getMessage().startswith("upfirdn2d: using CUDA plugin (sm_") for r in caplog.records)
