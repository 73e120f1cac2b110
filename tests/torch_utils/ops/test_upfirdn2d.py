"""upfirdn2d reference path against a brute-force numpy upfirdn, plus gradients and the helpers' rules."""

import itertools

import numpy as np
import ops_reference as ref
import pytest
import torch
from tolerances import rounding_tol

from torch_utils.ops import upfirdn2d


def _random_case(seed: int):
    """A random tiny problem: odd sizes, asymmetric and negative pads, up/down in {1, 2, 4}, 3 or 6 channels."""
    rng = np.random.default_rng(seed)
    up = tuple(int(v) for v in rng.choice([1, 2, 4], size=2)) if rng.random() < 0.6 else (1, 1)
    down = tuple(int(v) for v in rng.choice([1, 2, 4], size=2))
    if rng.random() < 0.5:
        f = rng.standard_normal(int(rng.integers(1, 6)))  # 1-D, made separable below
    else:
        f = rng.standard_normal((int(rng.integers(1, 5)), int(rng.integers(1, 5))))
    size = (int(rng.integers(3, 8)), int(rng.integers(3, 8)))  # (h, w)
    fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else f.shape
    padding = tuple(int(v) for v in rng.integers(-1, 4, size=4))
    # Keep the output non-empty: the padded, upsampled size must cover the filter.
    padding = (
        padding[0],
        max(padding[1], fw - size[1] * up[0] - padding[0]),
        padding[2],
        max(padding[3], fh - size[0] * up[1] - padding[2]),
    )
    x = rng.standard_normal((2, 3 if seed % 2 else 6) + size)  # 3 channels take the folded path, 6 do not
    return x, f, up, down, padding, bool(rng.random() < 0.5), float(rng.choice([1.0, 0.5, 3.0]))


@pytest.mark.parametrize("seed", range(60))
def test_matches_bruteforce(seed):
    x, f, up, down, padding, flip, gain = _random_case(seed)
    out = upfirdn2d.upfirdn2d(
        torch.tensor(x), torch.tensor(f), up=up, down=down, padding=padding, flip_filter=flip, gain=gain
    )
    expected = ref.upfirdn2d(x, f, up, down, padding, flip, gain)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


def _bf16_tol(f: np.ndarray, x_max: float, gain: float) -> float:
    """bf16 upfirdn2d on bf16 inputs: per pass, the filter (times the gain) and the output are rounded to bf16;
    the products of bf16 values are exact in fp32 and the sums of at most f.size terms accumulate in fp32."""
    passes = 2 if f.ndim == 1 else 1
    magnitude = x_max * np.abs(f).sum() ** passes * gain
    return rounding_tol(torch.bfloat16, 2 * passes, magnitude) + rounding_tol(torch.float32, f.size * passes, magnitude)


_UPSAMPLING_SEEDS = [seed for seed in range(60) if _random_case(seed)[2] != (1, 1)]


@pytest.mark.parametrize("seed", _UPSAMPLING_SEEDS)
def test_bf16_upsampling_matches_bruteforce_on_the_rounded_input(seed):
    # On the CPU the depthwise transposed convolution is a convolution of the zero-stuffed input (fp32 too).
    x, f, up, down, padding, flip, gain = _random_case(seed)
    x16 = torch.tensor(x).bfloat16()
    out = upfirdn2d.upfirdn2d(x16, torch.tensor(f), up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
    assert out.dtype == torch.bfloat16
    expected = ref.upfirdn2d(x16.double().numpy(), f, up, down, padding, flip, gain)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=0, atol=_bf16_tol(f, np.abs(x).max(), gain))


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_downsampling_gradient_is_the_transposed_filter(channels_last):
    # The input gradient of a downsampling pass is an upsampling pass: the zero-stuffed path in bf16.
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 9, 8, generator=gen).bfloat16()
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    dy = torch.randn(2, 4, 5, 5, generator=gen).bfloat16()  # (9 + 2) // 2, (8 + 2) // 2
    if channels_last:
        x, dy = x.to(memory_format=torch.channels_last), dy.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    y = upfirdn2d.downsample2d(x, f, padding=1)
    (dx,) = torch.autograd.grad(y, x, dy)
    x64 = x.detach().double().requires_grad_(True)
    (expected,) = torch.autograd.grad(upfirdn2d.downsample2d(x64, f.double(), padding=1), x64, dy.double())
    assert dx.dtype == torch.bfloat16 and dx.shape == x.shape
    torch.testing.assert_close(dx.double(), expected, rtol=0, atol=_bf16_tol(f.numpy(), dy.abs().max().item(), 1))


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (4, 2)])
def test_channels_last_gives_same_values(up, down):
    x = torch.randn(2, 5, 9, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(up * 10 + down))
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    args = dict(up=up, down=down, padding=(2, 1, 1, 2))
    out = upfirdn2d.upfirdn2d(x.to(memory_format=torch.channels_last), f, **args)
    torch.testing.assert_close(out, upfirdn2d.upfirdn2d(x, f, **args), rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_a_cropped_batch_gives_the_values_of_its_copy(channels):
    # 1-4 channels are filtered as the channels of one sample, also for a crop (a view, not contiguous).
    x = torch.randn(3, channels, 12, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(channels))
    crop = x[:, :, 1:10, 2:11]
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    for args in (dict(up=2, padding=1), dict(down=2, padding=(2, 1, 1, 2))):
        expected = upfirdn2d.upfirdn2d(crop.contiguous(), f, **args)
        torch.testing.assert_close(upfirdn2d.upfirdn2d(crop, f, **args), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            expected.numpy(),
            ref.upfirdn2d(
                crop.numpy(),
                f.numpy(),
                (args.get("up", 1),) * 2,
                (args.get("down", 1),) * 2,
                upfirdn2d._parse_padding(args["padding"]),
                False,
                1,
            ),
            rtol=0,
            atol=1e-12,
        )


@pytest.mark.parametrize(
    "separable,up,down,padding",
    [
        (True, 2, 1, (2, 1, 1, 2)),
        (False, 1, 2, (1, 1, 0, 2)),
        (False, 2, 2, (-1, 2, 1, 0)),
        (True, 1, 1, (1, -1, 0, 1)),
    ],
)
def test_gradcheck_and_gradgradcheck(separable, up, down, padding):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    f = (
        torch.randn(3, dtype=torch.float64, generator=gen)
        if separable
        else torch.randn(3, 2, dtype=torch.float64, generator=gen)
    )

    def op(x):
        return upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, gain=2.0)

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


def test_setup_filter_rules():
    # Fewer than 8 taps: outer product, normalised to sum 1.
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and f.shape == (4, 4)
    # Exact: small integers over a power of two are representable in float32.
    torch.testing.assert_close(
        f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64, rtol=0, atol=0
    )
    # 8 or more taps stay separable, each axis carries sqrt(gain).
    f = upfirdn2d.setup_filter(np.ones(8), gain=4)
    assert f.shape == (8,)
    torch.testing.assert_close(f, torch.full([8], 2 / 8), rtol=0, atol=0)  # exact: sqrt(4) / 8 = 0.25
    # Flipping, no normalisation, scalar and None (exact: a permutation of small integers).
    torch.testing.assert_close(
        upfirdn2d.setup_filter([[1, 2], [3, 4]], normalize=False, flip_filter=True),
        torch.tensor([[4.0, 3], [2, 1]]),
        rtol=0,
        atol=0,
    )
    assert upfirdn2d.setup_filter(None).tolist() == [[1.0]]
    assert upfirdn2d.setup_filter([1, 2], separable=True).tolist() == pytest.approx(
        [1 / 3, 2 / 3], rel=rounding_tol(torch.float32, 2)
    )  # a float32 sum and division
    with pytest.raises(ValueError, match="separable"):
        upfirdn2d.setup_filter([[1, 2]], separable=True)


def test_filter2d_is_a_true_convolution_keeping_size():
    """filter2d's impulse response is the filter itself (flipped with flip_filter), at a fixed offset."""
    f = torch.arange(1.0, 13.0, dtype=torch.float64).reshape(3, 4)  # asymmetric, even width
    x = torch.zeros(1, 1, 9, 10, dtype=torch.float64)
    x[0, 0, 4, 5] = 1
    out = upfirdn2d.filter2d(x, f)
    assert out.shape == x.shape
    # The response starts (fh - 1) - fh // 2 rows above the impulse (true convolution).
    r0, c0 = 4 - ((3 - 1) - 3 // 2), 5 - ((4 - 1) - 4 // 2)
    torch.testing.assert_close(out[0, 0, r0 : r0 + 3, c0 : c0 + 4], f)
    assert out.abs().sum().item() == pytest.approx(f.sum().item())
    flipped = upfirdn2d.filter2d(x, f, flip_filter=True)
    torch.testing.assert_close(flipped[0, 0, r0 : r0 + 3, c0 : c0 + 4], f.flip([0, 1]))


@pytest.mark.parametrize("taps,factor", [([1, 1], 2), ([1, 3, 3, 1], 2), ([1, 1, 1, 1], 4), ([1, 2, 3, 4, 3, 2, 1], 4)])
def test_upsample2d_size_and_constant_preservation(taps, factor):
    """With equal polyphase sums, upsampling keeps a constant image constant away from the borders."""
    f = upfirdn2d.setup_filter(taps).double()
    x = torch.full([1, 2, 12, 8], 3.0, dtype=torch.float64)
    up = upfirdn2d.upsample2d(x, f, up=factor)
    assert up.shape == (1, 2, 12 * factor, 8 * factor)
    m = len(taps)
    torch.testing.assert_close(up[:, :, m:-m, m:-m], torch.full_like(up[:, :, m:-m, m:-m], 3.0))


@pytest.mark.parametrize(
    "taps,factor", list(itertools.product([[1, 1], [1, 3, 3, 1], [1, 2, 3, 2, 1], list(range(1, 9))], [2, 4]))
)
def test_downsample2d_size_and_constant_preservation(taps, factor):
    f = upfirdn2d.setup_filter(taps).double()
    x = torch.full([1, 2, 32, 24], 3.0, dtype=torch.float64)
    down = upfirdn2d.downsample2d(x, f, down=factor)
    assert down.shape == (1, 2, 32 // factor, 24 // factor)
    m = len(taps) // factor + 1  # outputs that see the zero padding
    torch.testing.assert_close(down[:, :, m:-m, m:-m], torch.full_like(down[:, :, m:-m, m:-m], 3.0))


def test_helpers_match_bruteforce_with_extra_padding():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 5, 6))
    f = np.array([1.0, 3, 3, 1])
    ft = upfirdn2d.setup_filter(f, normalize=False).double()
    xt = torch.tensor(x)
    f2 = np.outer(f, f)
    np.testing.assert_allclose(
        upfirdn2d.upsample2d(xt, ft, padding=(1, 0, 0, 2)).numpy(),
        ref.upfirdn2d(x, f2, up=(2, 2), padding=(1 + 2, 0 + 1, 0 + 2, 2 + 1), gain=4),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        upfirdn2d.downsample2d(xt, ft, padding=1).numpy(),
        ref.upfirdn2d(x, f2, down=(2, 2), padding=(2, 2, 2, 2)),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        upfirdn2d.filter2d(xt, ft, padding=(0, 1, 1, 0)).numpy(), ref.upfirdn2d(x, f2, padding=(2, 2, 3, 1)), atol=1e-12
    )


def test_bad_arguments_raise_clear_errors():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="4-D"):
        upfirdn2d.upfirdn2d(x[0], None)
    with pytest.raises(ValueError, match="up"):
        upfirdn2d.upfirdn2d(x, None, up=0)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d.upfirdn2d(x, None, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="longer than"):
        upfirdn2d.upfirdn2d(x, torch.ones(5, 5))
