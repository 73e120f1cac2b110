"""The CPU kernel of bias_act in float32 and bfloat16, in every layout it takes, against the float64 reference path,
and the calls it leaves to the reference (other activations and layouts, torch.func transforms)."""

import pytest
import torch

from torch_utils.ops import bias_act, bias_act_cpu

CLAMP = 0.75  # exact in bfloat16, as conv_clamp (256) is: a clamp that rounds moves the clamped outputs inward


def kernel_calls(monkeypatch) -> list[int]:
    """Counts the calls that reach the kernel."""
    calls: list[int] = []
    forward = bias_act_cpu._BiasAct.forward
    monkeypatch.setattr(bias_act_cpu._BiasAct, "forward", lambda *a: calls.append(1) or forward(*a))
    return calls


def away_from_kinks(x: torch.Tensor, b: torch.Tensor, dim: int, gain: float) -> torch.Tensor:
    """Moves entries whose output lies within 2% of the clamp or near 0 (where rounding the output to bf16 may move
    it across the clamp, or to 0): there the slope read off a rounded output legitimately differs from float64's."""
    shape = [-1 if i == dim else 1 for i in range(x.ndim)]
    z = (x + b.reshape(shape)).double() * gain
    near = ((z.abs() - CLAMP).abs() < 0.02 * CLAMP) | (z.abs() < 1e-2)
    return torch.where(near, x + 0.05, x)


LAYOUTS = {
    "nchw": lambda: torch.randn(3, 8, 5, 6),
    "nhwc": lambda: torch.randn(3, 8, 5, 6).contiguous(memory_format=torch.channels_last),
    "fully-connected": lambda: torch.randn(7, 8),
    "channels in dim 2": lambda: torch.randn(2, 3, 8, 4),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    "act, clamp, with_bias", [("lrelu", CLAMP, True), ("relu", None, True), ("linear", CLAMP, False)]
)
def test_values_and_gradients_match_float64_within_one_rounding(monkeypatch, dtype, layout, act, clamp, with_bias):
    torch.manual_seed(0)
    dim = 2 if layout == "channels in dim 2" else 1
    x = LAYOUTS[layout]() * 0.5
    b = torch.randn(8) * 0.1
    gain = bias_act.activation_funcs[act].def_gain
    x = away_from_kinks(x, b if with_bias else torch.zeros(8), dim, gain).to(dtype).requires_grad_(True)
    bb = b.to(dtype).requires_grad_(True) if with_bias else None
    dy = torch.randn(x.shape).to(dtype)
    calls = kernel_calls(monkeypatch)
    y = bias_act.bias_act(x, bb, dim=dim, act=act, clamp=clamp, impl="cpu")
    grads = torch.autograd.grad(y, [x, bb] if with_bias else [x], dy)
    assert (
        calls == [1] and y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
    )

    x64, b64 = (
        x.detach().double().requires_grad_(True),
        bb.detach().double().requires_grad_(True) if with_bias else None,
    )
    y64 = bias_act.bias_act(x64, b64, dim=dim, act=act, clamp=clamp, impl="ref")
    grads64 = torch.autograd.grad(y64, [x64, b64] if with_bias else [x64], dy.double())
    eps = torch.finfo(dtype).eps
    # y and dx are each rounded once from their float value: half an ulp, relative.
    assert (y.double() - y64).abs().max() <= eps * y64.abs().max()
    assert (grads[0].double() - grads64[0]).abs().max() <= eps * grads64[0].abs().max()
    if with_bias:  # a sum of rounded dx per channel, rounded once: eps times the sum of |dx| bounds it
        others = [i for i in range(x.ndim) if i != dim]
        assert ((grads[1].double() - grads64[1]).abs() <= eps * (dy.double().abs() * gain).sum(others)).all()


def test_second_derivative_through_the_kernel_matches_the_reference(monkeypatch):
    """R1's double backward: the gradient of a function of the input gradient (float64)."""
    torch.manual_seed(1)
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 6, 1, 1, dtype=torch.float64)
    results = []
    for impl in ("cpu", "ref"):
        xi = x.clone().requires_grad_(True)
        y = bias_act.bias_act(torch.nn.functional.conv2d(xi, w), act="lrelu", clamp=1.0, impl=impl)
        (gx,) = torch.autograd.grad((y**2).sum(), xi, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.square().sum(), xi)
        results.append((y, gx, ggx))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_calls_the_kernel_does_not_take_go_to_the_reference_with_the_same_result(monkeypatch):
    x = torch.randn(4, 6, 5, 5)
    calls = kernel_calls(monkeypatch)
    cases = [
        dict(x=x.transpose(2, 3), act="lrelu"),  # neither contiguous nor channels_last
        dict(x=x, act="tanh"),  # not piecewise linear
        dict(x=x, act="lrelu", gain=-1.0),  # a negative gain flips the slope's sign test
        dict(x=x.half(), act="lrelu"),  # no float16 kernel on the CPU
    ]
    for case in cases:
        got = bias_act.bias_act(case.pop("x").requires_grad_(False), **case, impl="cpu")
        assert got.shape == (4, 6, 5, 5)
    assert calls == []
    t = x.transpose(2, 3)
    torch.testing.assert_close(
        bias_act.bias_act(t, act="lrelu", impl="cpu"), bias_act.bias_act(t, act="lrelu", impl="ref")
    )


def test_torch_func_per_sample_gradients_use_the_reference(monkeypatch):
    """DP-SGD's per-sample gradients (vmap of grad) cannot trace a compiled extension: they take the reference path."""
    torch.manual_seed(2)
    x, b = torch.randn(5, 4, 3), torch.randn(4)

    def loss(b, xi):
        return bias_act.bias_act(xi[None], b, act="lrelu", clamp=CLAMP, impl="cpu").square().sum()

    calls = kernel_calls(monkeypatch)
    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(b, x)
    assert calls == []
    for i in range(5):
        bi = b.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(loss(bi, x[i]), bi)
        torch.testing.assert_close(per_sample[i], expected)


def test_the_same_call_gives_the_same_bits_on_two_threads():
    torch.manual_seed(3)
    x = torch.randn(16, 32, 32, 32).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = bias_act.bias_act(x, torch.randn(32).to(torch.bfloat16), act="lrelu", clamp=CLAMP, impl="cpu")
        torch.manual_seed(3)
        torch.randn(16, 32, 32, 32)
        torch.set_num_threads(1)
        second = bias_act.bias_act(x, torch.randn(32).to(torch.bfloat16), act="lrelu", clamp=CLAMP, impl="cpu")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first, second)
