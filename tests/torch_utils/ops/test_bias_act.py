"""bias_act against closed-form numpy activations, plus first and second derivatives: the reference path and the
CPU kernel (which computes linear, relu and lrelu in float64 too, and hands the other activations to the reference)."""

import math

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act


def _numpy_act(name: str, x: np.ndarray, alpha: float) -> np.ndarray:
    """The activations written out from their textbook formulas."""
    selu_l, selu_a = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    sig = 1 / (1 + np.exp(-x))
    return {
        "linear": x,
        "relu": np.maximum(x, 0),
        "lrelu": np.where(x > 0, x, alpha * x),
        "tanh": np.tanh(x),
        "sigmoid": sig,
        "elu": np.where(x > 0, x, np.expm1(x)),
        "selu": selu_l * np.where(x > 0, x, selu_a * np.expm1(x)),
        "softplus": np.log1p(np.exp(x)),
        "swish": x * sig,
    }[name]


IMPLS = ["ref", "cpu"]
DEFAULT_GAIN = {"relu": math.sqrt(2), "lrelu": math.sqrt(2), "swish": math.sqrt(2)}
ACTS = sorted(bias_act.activation_funcs)


def test_activation_table_defaults():
    assert set(ACTS) == {"linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"}
    for name, spec in bias_act.activation_funcs.items():
        assert spec.def_gain == pytest.approx(DEFAULT_GAIN.get(name, 1.0))
        assert spec.def_alpha == (0.2 if name == "lrelu" else 0)
    assert [
        bias_act.activation_funcs[n].cuda_idx
        for n in ["linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish"]
    ] == list(range(1, 10))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dim", [1, 2])
def test_matches_closed_form_with_defaults(act, dim, impl):
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((2, 3, 5, 4)) * 2
    b = rng.standard_normal(x.shape[dim])
    shape = [-1 if i == dim else 1 for i in range(4)]
    expected = _numpy_act(act, x + b.reshape(shape), 0.2) * DEFAULT_GAIN.get(act, 1.0)
    for requires_grad in [False, True]:  # the in-place (no autograd) and the autograd paths
        out = bias_act.bias_act(
            torch.tensor(x, requires_grad=requires_grad), torch.tensor(b), dim=dim, act=act, impl=impl
        )
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ["lrelu", "relu", "swish", "tanh", "linear"])
@pytest.mark.parametrize("gain", [3.0, -2.0])
def test_alpha_gain_clamp_and_no_bias(act, gain, impl):
    x = np.linspace(-4, 4, 37).reshape(1, 37)
    out = bias_act.bias_act(torch.tensor(x), act=act, alpha=0.1, gain=gain, clamp=2.5, impl=impl)
    expected = np.clip(_numpy_act(act, x, 0.1) * gain, -2.5, 2.5)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradient_is_zero_where_clamped(impl):
    x = torch.tensor([-3.0, -0.4, 0.2, 0.9, 5.0], dtype=torch.float64, requires_grad=True)
    y = bias_act.bias_act(x[None], act="linear", gain=2.0, clamp=1.0, impl=impl)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert grad.tolist() == [0.0, 2.0, 2.0, 0.0, 0.0]


@pytest.mark.parametrize("impl", IMPLS)
def test_no_grad_path_leaves_input_untouched(impl):
    """The in-place fast path (no autograd) must never write into the caller's tensors."""
    x = torch.randn(2, 3, 4)
    b = torch.randn(3)
    x0, b0 = x.clone(), b.clone()
    with torch.no_grad():
        for act in ACTS:
            bias_act.bias_act(x, None, act=act, gain=2.0, clamp=0.5, impl=impl)
            bias_act.bias_act(x, b, act=act, gain=2.0, clamp=0.5, impl=impl)
    assert torch.equal(x, x0) and torch.equal(b, b0)
    assert torch.equal(bias_act.bias_act(x, act="linear", impl=impl), x)  # no bias, gain 1: x * 1 is exact


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 1.5])
def test_gradcheck_and_gradgradcheck(act, clamp, impl):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=gen)
    # Keep every point away from the kinks (0 for relu-likes) and the clamp edges, where the
    # finite differences of gradcheck are meaningless.
    x = torch.where(x.abs() < 0.2, x.sign() * 0.3 + x, x)
    b = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
    if clamp is not None:
        y = bias_act.bias_act(x, act=act).detach()
        x = torch.where((y.abs() - clamp).abs() < 0.1, x * 0.5, x)
    x.requires_grad_(True)

    def op(x, b):
        return bias_act.bias_act(x, b, act=act, clamp=clamp, impl=impl)

    assert torch.autograd.gradcheck(op, (x, b))
    assert torch.autograd.gradgradcheck(op, (x, b))


def test_bad_arguments_raise_clear_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown act"):
        bias_act.bias_act(x, act="gelu")
    with pytest.raises(ValueError, match="b must be 1-D"):
        bias_act.bias_act(x, torch.zeros(2))
    with pytest.raises(ValueError, match="clamp"):
        bias_act.bias_act(x, clamp=-1)
