"""Per-sample gradients (vmap over functional_call) equal a loop over single samples."""

import torch
import torch.nn.functional as F

from spine.dp.per_sample import per_sample_real_gradients
from training.networks import Discriminator


class PlainD(torch.nn.Module):
    """A float64-exact stand-in: conv -> lrelu -> linear, with a label projection like D's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        self.fc = torch.nn.Linear(3 * 8 * 8, 2)

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv(img), 0.2)
        return (self.fc(x.flatten(1)) * c).sum(1, keepdim=True)


def loop_reference(D: torch.nn.Module, img: torch.Tensor, c: torch.Tensor, r1_weight: float) -> list[dict]:
    """Ordinary autograd, one sample at a time: softplus(-D(x)) + r1_weight |dD/dx|^2."""
    rows = []
    D.requires_grad_(True)
    for i in range(img.shape[0]):
        D.zero_grad(set_to_none=True)
        x = img[i : i + 1].clone().requires_grad_(True)
        out = D(x, c[i : i + 1])
        loss = F.softplus(-out).sum()
        if r1_weight > 0:
            (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
            loss = loss + r1_weight * gx.square().sum()
        loss.backward()
        rows.append({n: p.grad.clone() for n, p in D.named_parameters()})
    return rows


def check_equal(D: torch.nn.Module, img: torch.Tensor, c: torch.Tensor, r1_weight: float, tol: float) -> None:
    grads = per_sample_real_gradients(D, img, c, r1_weight)
    reference = loop_reference(D, img, c, r1_weight)
    assert set(grads) == {n for n, _ in D.named_parameters()}
    for i, row in enumerate(reference):
        for name, expected in row.items():
            assert grads[name].shape == (img.shape[0], *expected.shape)
            scale = expected.abs().max().item() + 1e-30
            assert (grads[name][i] - expected).abs().max().item() <= tol * scale, (name, i)


def test_float64_plain_module_exact():
    torch.manual_seed(0)
    D = PlainD().double()
    img = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[[0, 1, 1, 0, 1]]
    check_equal(D, img, c, r1_weight=0.0, tol=1e-12)
    check_equal(D, img, c, r1_weight=2.5, tol=1e-12)


def test_stylegan_discriminator_matches_loop():
    # D computes in float32 internally (its blocks cast), so the reference is the same network one sample at a time.
    torch.manual_seed(1)
    D = Discriminator(
        c_dim=3,
        img_resolution=16,
        img_channels=1,
        channel_base=256,
        channel_max=16,
        epilogue_kwargs=dict(mbstd_num_channels=0),
    ).double()
    img = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    c = torch.eye(3, dtype=torch.float64)[[0, 2, 1]]
    check_equal(D, img, c, r1_weight=0.0, tol=1e-4)
    check_equal(D, img, c, r1_weight=0.4, tol=1e-4)


def test_samples_are_independent():
    # Changing sample 0 must leave the other samples' gradients untouched (no coupling, e.g. minibatch-std).
    torch.manual_seed(2)
    D = PlainD().double()
    img = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    c = torch.ones(4, 2, dtype=torch.float64)
    before = per_sample_real_gradients(D, img, c)
    img2 = img.clone()
    img2[0] += 1
    after = per_sample_real_gradients(D, img2, c)
    for name in before:
        assert torch.equal(before[name][1:], after[name][1:])
        assert not torch.equal(before[name][0], after[name][0])


def test_named_subset_equals_those_rows_of_the_full_gradients():
    # Restricted to some parameters, the others are constants: the same rows as the full gradients, float64 exact.
    torch.manual_seed(3)
    D = PlainD().double()
    img = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[[0, 1, 1, 0]]
    full = per_sample_real_gradients(D, img, c, r1_weight=1.5)
    subset = per_sample_real_gradients(D, img, c, r1_weight=1.5, names={"fc.weight", "fc.bias"})
    assert set(subset) == {"fc.weight", "fc.bias"}
    for name, rows in subset.items():
        assert torch.allclose(rows, full[name], rtol=1e-12, atol=1e-12), name
