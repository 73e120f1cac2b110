"""conv2d_resample's fast paths against the brute-force definition: pad, [up + FIR], conv, [FIR + down]."""

import numpy as np
import ops_reference as ref
import pytest
import torch

from torch_utils.ops import conv2d_gradfix, upfirdn2d
from torch_utils.ops.conv2d_resample import conv2d_resample


def _bruteforce(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """The definition, with the filter's share of the padding written out (upsample2d/downsample2d rules)."""
    fh, fw = f.shape
    px0, px1, py0, py1 = padding
    if up > 1:
        px0, px1, py0, py1 = (
            px0 + (fw + up - 1) // 2,
            px1 + (fw - up) // 2,
            py0 + (fh + up - 1) // 2,
            py1 + (fh - up) // 2,
        )
    if down > 1:
        px0, px1, py0, py1 = (
            px0 + (fw - down + 1) // 2,
            px1 + (fw - down) // 2,
            py0 + (fh - down + 1) // 2,
            py1 + (fh - down) // 2,
        )
    fu = f if up > 1 else np.ones((1, 1))
    y = ref.upfirdn2d(x, fu, up=(up, up), padding=(px0, px1, py0, py1), flip_filter=flip_filter, gain=up**2)
    y = ref.conv2d(y, w if flip_weight else w[:, :, ::-1, ::-1], groups)
    if down > 1:
        y = ref.upfirdn2d(y, f, down=(down, down), flip_filter=flip_filter)
    return y


CASES = [
    # (kernel, up, down, padding, groups, flip_weight, flip_filter, taps)
    (3, 1, 1, 1, 1, True, False, 4),  # plain conv
    (3, 1, 1, (0, 2, 1, 0), 1, False, False, 4),  # asymmetric padding
    (3, 1, 1, (-1, 1, 0, 0), 2, True, False, 4),  # negative padding, groups
    (3, 2, 1, 1, 1, True, False, 4),  # transposed conv + FIR
    (3, 2, 1, (1, 0, 2, 1), 2, False, True, 3),
    (4, 4, 1, 0, 1, True, False, 4),
    (3, 1, 2, 1, 1, True, False, 4),  # FIR + strided conv
    (2, 1, 2, (0, 1, 1, 0), 2, False, True, 3),
    (3, 1, 4, 1, 1, True, False, 4),
    (1, 1, 2, 0, 1, True, False, 4),  # 1x1 down: filter first
    (1, 2, 1, 0, 2, True, True, 4),  # 1x1 up: filter last
    (3, 2, 2, 1, 1, True, False, 4),  # up then down
    (1, 2, 2, 0, 1, False, False, 3),
]


@pytest.mark.parametrize("case", CASES)
def test_matches_bruteforce(case):
    k, up, down, padding, groups, flip_weight, flip_filter, taps = case
    rng = np.random.default_rng(k * 100 + up * 10 + down + groups)
    x = rng.standard_normal((2, 4, 7, 9))
    w = rng.standard_normal((6, 4 // groups, k, k + (1 if k > 1 else 0)))  # non-square kernels too
    f = rng.standard_normal((taps, taps))
    out = conv2d_resample(
        torch.tensor(x),
        torch.tensor(w),
        torch.tensor(f),
        up=up,
        down=down,
        padding=padding,
        groups=groups,
        flip_weight=flip_weight,
        flip_filter=flip_filter,
    )
    padding = upfirdn2d._parse_padding(padding)
    expected = _bruteforce(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
def test_stylegan_layer_sizes_and_channels_last(up, down):
    """A 3x3 layer with padding 1 scales H and W exactly by up / down, in either memory format."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64, generator=gen)
    w = torch.randn(5, 4, 3, 3, dtype=torch.float64, generator=gen)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    out = conv2d_resample(x, w, f, up=up, down=down, padding=1)
    assert out.shape == (2, 5, 8 * up // down, 8 * up // down)
    out_cl = conv2d_resample(x.to(memory_format=torch.channels_last), w, f, up=up, down=down, padding=1)
    torch.testing.assert_close(out_cl, out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("up,down,k", [(1, 1, 3), (2, 1, 3), (1, 2, 3), (2, 1, 1), (1, 2, 1)])
def test_gradcheck_and_gradgradcheck(up, down, k):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(2, 2, k, k, dtype=torch.float64, generator=gen, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 2, 1])

    def op(x, w):
        return conv2d_resample(x, w, f, up=up, down=down, padding=k // 2)

    assert torch.autograd.gradcheck(op, (x, w))
    assert torch.autograd.gradgradcheck(op, (x, w))


def test_no_weight_gradients_applies_to_resampling_layers():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for up, down in [(1, 1), (2, 1), (1, 2)]:
        y = conv2d_resample(x, w, f, up=up, down=down, padding=1)
        with conv2d_gradfix.no_weight_gradients():
            gx, gw = torch.autograd.grad(y.square().sum(), [x, w], allow_unused=True)
        assert gw is None and gx.abs().sum() > 0


def test_bad_arguments_raise_clear_errors():
    x = torch.zeros(1, 4, 5, 5)
    with pytest.raises(ValueError, match="channels"):
        conv2d_resample(x, torch.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match="up and down"):
        conv2d_resample(x, torch.zeros(2, 4, 3, 3), up=0)
    with pytest.raises(ValueError, match="4-D"):
        conv2d_resample(x[0], torch.zeros(2, 4, 3, 3))
