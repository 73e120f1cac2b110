"""The bias_act CUDA kernel against the float64 reference path: values, first and second derivatives."""

from __future__ import annotations

import logging

import pytest
import torch
from tolerances import rounding_tol

from torch_utils import custom_ops
from torch_utils.ops import bias_act as bias_act_module
from torch_utils.ops.bias_act_cuda import bias_act_cuda

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ACTS = sorted(bias_act_module.activation_funcs)
# (shape, bias dim, memory format): a fully-connected layer, conv outputs in both layouts, a bias on the last dim.
LAYOUTS = [
    ([8, 16], 1, torch.contiguous_format),
    ([2, 8, 5, 7], 1, torch.contiguous_format),
    ([2, 8, 5, 7], 1, torch.channels_last),
    ([3, 4, 6], 2, torch.contiguous_format),
]


def _inputs(shape, dim, memory_format, dtype, seed, with_bias=True):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2).to(dtype)
    b = torch.randn([shape[dim]], generator=gen, dtype=torch.float64).to(dtype) if with_bias else None
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    if len(shape) == 4:
        x = x.contiguous(memory_format=memory_format)
    return x, b, w, v


def _value_and_derivatives(fn, x, b, w, v):
    """y, the gradient of <y, w> w.r.t. (x, b), and the gradient of <d<y,w>/dx, v> w.r.t. (x, b)."""
    x = x.detach().requires_grad_()
    b = None if b is None else b.detach().requires_grad_()
    inputs = [x] if b is None else [x, b]
    y = fn(x, b)
    first = torch.autograd.grad((y * w.to(y)).sum(), inputs, create_graph=True)
    second = [None] * len(inputs)
    if first[0].requires_grad:  # not so where the activation is linear in x (autograd keeps no graph)
        second = torch.autograd.grad((first[0] * v.to(y)).sum(), inputs, allow_unused=True)
    second = [torch.zeros_like(t) if g is None else g for g, t in zip(second, inputs)]
    return [y, *first, *second]


def _compare(act, shape, dim, memory_format, dtype, clamp, gain, alpha, seed, rtol, atol, with_bias=True):
    x, b, w, v = _inputs(shape, dim, memory_format, dtype, seed, with_bias)

    def cuda(x_, b_):
        return bias_act_cuda(x_, b_, dim, act, alpha, gain, clamp)

    def ref(x_, b_):
        return bias_act_module.bias_act(x_, b_, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")

    got = _value_and_derivatives(cuda, x.cuda(), None if b is None else b.cuda(), w.cuda(), v.cuda())
    want = _value_and_derivatives(ref, x.double(), None if b is None else b.double(), w, v)
    assert got[0].stride() == x.stride()  # the output keeps the input's layout
    for name, g, e in zip(["y", "dx", "db", "d2x", "d2b"] if b is not None else ["y", "dx", "d2x"], got, want):
        torch.testing.assert_close(g.double().cpu(), e, rtol=rtol, atol=atol, msg=lambda m: f"{act} {name}: {m}")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape, dim, memory_format", LAYOUTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_fp32_matches_reference(act, shape, dim, memory_format, clamp):
    spec = bias_act_module.activation_funcs[act]
    # float32: the activation and its derivatives take ~10 roundings, db sums up to 70 terms: 80 eps = 9.5e-6.
    _compare(
        act,
        shape,
        dim,
        memory_format,
        torch.float32,
        clamp,
        spec.def_gain,
        spec.def_alpha,
        seed=1,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("act", ["lrelu", "swish", "elu"])
def test_custom_gain_alpha_and_no_bias(act):
    _compare(
        act,
        [2, 8, 5, 7],
        1,
        torch.channels_last,
        torch.float32,
        clamp=1.5,
        gain=1.7,
        alpha=0.3,
        seed=2,
        rtol=1e-5,
        atol=1e-5,
        with_bias=False,
    )  # as above: < 80 float32 roundings


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_fp16_within_half_precision(act, memory_format):
    spec = bias_act_module.activation_funcs[act]
    # Computed in fp32 and rounded once, but w, v and the bias-gradient sums of 70 terms are fp16 too:
    # about 10 float16 roundings on values of order 1, rounding_tol(float16, 10) = 9.8e-3.
    _compare(
        act,
        [2, 8, 5, 7],
        1,
        memory_format,
        torch.float16,
        256.0,
        spec.def_gain,
        spec.def_alpha,
        seed=3,
        rtol=1e-2,
        atol=1e-2,
    )


@pytest.mark.parametrize("act", ACTS)
def test_float64_gradcheck_and_gradgradcheck(act):
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn([3, 4, 2], generator=gen, dtype=torch.float64) * 2).cuda().requires_grad_()
    b = torch.randn([4], generator=gen, dtype=torch.float64).cuda().requires_grad_()
    spec = bias_act_module.activation_funcs[act]

    def fn(x_, b_):
        return bias_act_cuda(x_, b_, 1, act, spec.def_alpha, 1.3, 2.5)

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_third_derivative_is_refused():
    x = torch.randn([4, 3], device="cuda", dtype=torch.float64, requires_grad=True)
    y = bias_act_cuda(x, None, 1, "tanh", 0.0, 1.0, None)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="up to second order"):
        torch.autograd.grad(h.sum(), x)


def test_public_api_auto_picks_cuda(caplog, monkeypatch):
    monkeypatch.delenv(custom_ops.IMPL_ENV_VAR, raising=False)
    custom_ops.reset_state()
    x = torch.randn([4, 6, 3, 3], device="cuda")
    b = torch.randn([6], device="cuda")
    with caplog.at_level(logging.INFO, logger=custom_ops.__name__):
        got = bias_act_module.bias_act(x, b, act="lrelu", clamp=0.5)
    assert any(r.getMessage().startswith("bias_act: using CUDA plugin (sm_") for r in caplog.records)
    want = bias_act_module.bias_act(x, b, act="lrelu", clamp=0.5, impl="ref")
    # Elementwise bias, lrelu, gain and clamp: 4 float32 roundings on |x| < 6.
    torch.testing.assert_close(got, want, rtol=0, atol=rounding_tol(torch.float32, 4, 6))
