"""Tests of torch_utils.host_access: each kind of host access is refused, device-only work passes."""

import pytest
import torch

from torch_utils.host_access import HostAccessError, forbid_host_access


@pytest.mark.parametrize(
    "access, what",
    [
        (lambda x: x.sum().item(), "_local_scalar_dense"),
        (lambda x: x.nonzero(), "nonzero"),
        (lambda x: x[x > 0], "boolean mask"),
        (lambda x: x.cpu(), "_to_copy makes a host tensor"),
        (lambda x: x * torch.ones(3), "host tensor"),
        (lambda x: torch.empty([], dtype=torch.int64).random_(1, 5), "host tensor"),  # a host RNG draw
        (lambda x: x + torch.tensor([1.0, 2.0, 3.0], device=x.device), "host data"),
        (lambda x: torch.as_tensor(0.5, device=x.device), "host data"),
    ],
)
def test_each_host_access_is_refused(access, what):
    x = torch.empty(3, device="meta")
    with forbid_host_access(), pytest.raises(HostAccessError, match=what):
        access(x)


def test_device_work_with_double_backward_passes():
    x = torch.empty(4, 3, device="meta", requires_grad=True)
    w = torch.empty(3, 2, device="meta", requires_grad=True)
    with forbid_host_access():
        y = torch.tanh(x @ w) * 2.0 + torch.full([2], 0.5, device="meta")
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        gx.square().sum().backward()
        z = torch.as_tensor(x)  # an existing tensor is not host data
    assert w.grad.shape == w.shape and z is x
    assert torch.tensor is not None and torch.tensor([1.0]).device.type == "cpu"  # restored on exit
