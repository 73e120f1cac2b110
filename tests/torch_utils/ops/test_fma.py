"""fma: a * b + c with broadcasting, gradients summed back to each operand's shape."""

import numpy as np
import pytest
import torch

from torch_utils.ops.fma import fma

SHAPES = [((2, 3, 4), (2, 3, 4), (2, 3, 4)), ((3, 1), (1, 4), (4,)), ((4,), (2, 3, 1), (1,)), ((), (2, 2), (2, 1))]


@pytest.mark.parametrize("shapes", SHAPES)
def test_values_and_gradients_match_closed_form(shapes):
    rng = np.random.default_rng(len(shapes[0]))
    a, b, c = (rng.standard_normal(s) for s in shapes)
    ta, tb, tc = (torch.tensor(v, requires_grad=True) for v in (a, b, c))
    out = fma(ta, tb, tc)
    np.testing.assert_allclose(out.detach().numpy(), a * b + c, rtol=1e-14, atol=1e-14)
    # d/da sum(g * (a*b + c)) = sum over broadcast dims of g * b, etc.
    g = rng.standard_normal(out.shape)
    da, db, dc = torch.autograd.grad(out, (ta, tb, tc), torch.tensor(g))

    def unbroadcast(v, shape):
        v = v.sum(axis=tuple(range(v.ndim - len(shape))))
        return v.sum(axis=tuple(i for i, s in enumerate(shape) if s == 1), keepdims=True).reshape(shape)

    np.testing.assert_allclose(da.numpy(), unbroadcast(g * np.broadcast_to(b, g.shape), a.shape), atol=1e-12)
    np.testing.assert_allclose(db.numpy(), unbroadcast(g * np.broadcast_to(a, g.shape), b.shape), atol=1e-12)
    np.testing.assert_allclose(dc.numpy(), unbroadcast(g, c.shape), atol=1e-12)


@pytest.mark.parametrize("shapes", SHAPES)
def test_gradcheck_and_gradgradcheck(shapes):
    gen = torch.Generator().manual_seed(0)
    args = tuple(torch.randn(s, dtype=torch.float64, generator=gen, requires_grad=True) for s in shapes)
    assert torch.autograd.gradcheck(fma, args)
    assert torch.autograd.gradgradcheck(fma, args)
