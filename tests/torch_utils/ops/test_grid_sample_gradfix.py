"""grid_sample: equal to torch's bilinear/zeros/align_corners=False sampler and to a brute-force
bilinear interpolation, with double backward w.r.t. the input (R1 through geometric augmentation)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops.grid_sample_gradfix import grid_sample


def _bilinear_bruteforce(img: np.ndarray, gx: float, gy: float) -> np.ndarray:
    """Sample [C, H, W] at one normalised point, pixel by pixel from the definition."""
    c, h, w = img.shape
    x, y = ((gx + 1) * w - 1) / 2, ((gy + 1) * h - 1) / 2
    out = np.zeros(c)
    for yi in range(h):
        for xi in range(w):
            weight = max(0.0, 1 - abs(x - xi)) * max(0.0, 1 - abs(y - yi))  # tent kernel, zeros outside
            out += weight * img[:, yi, xi]
    return out


def _inputs(seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    img = torch.randn(2, 3, 5, 4, dtype=dtype, generator=gen)
    grid = torch.rand(2, 3, 6, 2, dtype=dtype, generator=gen) * 2.6 - 1.3  # some points fall outside
    return img, grid


def test_matches_bruteforce_and_torch():
    img, grid = _inputs(0)
    out = grid_sample(img, grid)
    assert out.shape == (2, 3, 3, 6)
    torch.testing.assert_close(
        out, F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    )
    for n, i, j in [(0, 0, 0), (1, 2, 5), (1, 1, 3)]:
        expected = _bilinear_bruteforce(img[n].numpy(), *grid[n, i, j].tolist())
        np.testing.assert_allclose(out[n, :, i, j].numpy(), expected, atol=1e-12)


def test_identity_grid_reproduces_image():
    img, _ = _inputs(1)
    theta = torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64).expand(2, 2, 3)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    torch.testing.assert_close(grid_sample(img, grid), img)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_match_torch(dtype):
    img, grid = _inputs(2, dtype)
    img.requires_grad_(True)
    grid.requires_grad_(True)
    g = torch.randn(2, 3, 3, 6, dtype=dtype)
    ours = torch.autograd.grad(grid_sample(img, grid), (img, grid), g)
    theirs = torch.autograd.grad(F.grid_sample(img, grid, align_corners=False), (img, grid), g)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e)


def test_gradcheck_and_gradgradcheck():
    img, grid = _inputs(3)
    # Random points avoid pixel centres (where the bilinear weights have kinks) with probability 1.
    img, grid = img[:1, :2].requires_grad_(True), grid[:1, :2, :3].requires_grad_(True)
    assert torch.autograd.gradcheck(grid_sample, (img, grid))
    assert torch.autograd.gradgradcheck(grid_sample, (img, grid))


def test_r1_through_grid_sample():
    """grad of ||d out / d img||^2 w.r.t. upstream weights: torch's own grid_sample cannot do this today."""
    img, grid = _inputs(4)
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    img.requires_grad_(True)
    out = grid_sample(img * scale, grid)
    (gimg,) = torch.autograd.grad(out.square().sum(), (img,), create_graph=True)
    (gscale,) = torch.autograd.grad(gimg.square().sum(), (scale,))
    # out is linear in img*scale: out = scale * A img, gimg = 2 scale^2 A^T A img, so the penalty
    # 4 scale^4 ||A^T A img||^2 has derivative 4 * penalty / scale.
    penalty = gimg.square().sum().item()
    assert gscale.item() == pytest.approx(4 * penalty / 1.5, rel=1e-10)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="grid"):
        grid_sample(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 3))


def test_fixed_grid_path_gradcheck_and_gradgradcheck():
    """A grid without gradient takes torch's sampler and its adjoint; every input gradient order still works."""
    img, grid = _inputs(5)
    img = img[:1, :2].requires_grad_(True)
    grid = grid[:1, :2, :3]

    def op(img):
        return grid_sample(img, grid)

    assert torch.autograd.gradcheck(op, (img,))
    assert torch.autograd.gradgradcheck(op, (img,))
