"""Tests of training.augment: each op against a closed form, the resampler against exact references, the
gradients needed by R1, the preset table, and the ADA controller's exact steps."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from tolerances import rounding_tol

from torch_utils.host_access import forbid_host_access
from training.augment import (
    IMGFILTER_EXPECTED_POWER,
    SYM6_LOWPASS,
    AdaController,
    AugmentPipe,
    _blit,
    _resample,
    _rotate2d,
    _translate2d,
    augpipe_specs,
    wavelet_filter_bank,
)


def normal_quantile(q: float) -> float:
    return math.sqrt(2) * torch.erfinv(torch.tensor(2 * q - 1, dtype=torch.float64)).item()


def make_pipe(p: float = 1.0, **ops: float) -> AugmentPipe:
    pipe = AugmentPipe(**ops)
    pipe.p.fill_(p)
    return pipe


def smooth_image(size: int, n: int = 1) -> torch.Tensor:
    """A band-limited test image (two low-frequency plane waves) sampled at centred pixel coordinates."""
    return smooth_function(*centred_grid(size)).expand(n, 1, size, size)


def centred_grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.arange(size, dtype=torch.float64) + 0.5 - size / 2
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    return xs, ys


def smooth_function(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    size = 32
    return (
        torch.cos(2 * math.pi * (1.4 * xs + 0.6 * ys + 0.2) / size)
        + torch.sin(2 * math.pi * (0.6 * xs - 1.5 * ys) / size)
    ).float()


# ----------------------------------------------------------------------------------------------------
# Buffers and filters.


def test_state_dict_keys_and_shapes():
    state = AugmentPipe(**augpipe_specs["bgcfnc"]).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {"p": (), "Hz_geom": (12,), "Hz_fbank": (4, 43)}
    assert state["p"].item() == 0


def test_sym6_is_an_orthogonal_lowpass():
    h = torch.tensor(SYM6_LOWPASS, dtype=torch.float64)
    # The tables give 16 significant digits and the sums have 12 float64 terms (< 12 eps = 3e-15): 1e-12 is slack.
    assert h.sum().item() == pytest.approx(math.sqrt(2), abs=1e-12)
    for lag in range(0, 12, 2):
        expected = 1.0 if lag == 0 else 0.0
        assert (h[: 12 - lag] * h[lag:]).sum().item() == pytest.approx(expected, abs=1e-12)


def test_filter_bank_partitions_the_spectrum():
    bank = wavelet_filter_bank([-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025])
    assert bank.shape == (4, 43)
    delta = torch.zeros(43)
    delta[21] = 1
    # Built in float64 and rounded once to float32 (taps < 1): the 4-band sum carries 4 roundings, the flip none.
    torch.testing.assert_close(bank.sum(dim=0), delta, atol=rounding_tol(torch.float32, 4), rtol=0)  # identity
    torch.testing.assert_close(bank, bank.flip(1), atol=rounding_tol(torch.float32, 1), rtol=0)  # zero phase
    # The float32 taps' rounding summed over 43 taps (sum |tap| < 1.2 per band) in the float64 transform.
    response = torch.fft.rfft(bank.double(), n=512).abs()
    tol = rounding_tol(torch.float32, 43, 1.2)
    assert response[:, 0].tolist() == pytest.approx([1, 0, 0, 0], abs=tol)  # only band 0 passes DC
    assert response[:, -1].tolist() == pytest.approx([0, 0, 0, 1], abs=tol)  # only band 3 passes Nyquist
    peaks = response.argmax(dim=1).tolist()
    assert peaks == sorted(peaks) and len(set(peaks)) == 4  # low to high frequency


def test_presets():
    assert augpipe_specs["blit"] == dict(xflip=1, rotate90=1, xint=1)
    assert augpipe_specs["bgc"] == {**augpipe_specs["blit"], **augpipe_specs["geom"], **augpipe_specs["color"]}
    assert set(augpipe_specs["bgcfnc"]) == {
        "xflip",
        "rotate90",
        "xint",
        "scale",
        "rotate",
        "aniso",
        "xfrac",
        "brightness",
        "contrast",
        "lumaflip",
        "hue",
        "saturation",
        "imgfilter",
        "noise",
        "cutout",
    }
    assert set(augpipe_specs) == {
        "blit",
        "geom",
        "color",
        "filter",
        "noise",
        "cutout",
        "bg",
        "bgc",
        "bgcf",
        "bgcfn",
        "bgcfnc",
    }


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="C = 1 or 3"):
        AugmentPipe(xflip=1)(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="imgfilter_bands"):
        AugmentPipe(imgfilter_bands=[1, 1])
    with pytest.raises(ValueError, match="xflip"):
        AugmentPipe(xflip=-1)


# ----------------------------------------------------------------------------------------------------
# Identity, blits and resampling.


@pytest.mark.parametrize("channels", [1, 3])
def test_p_zero_is_exact_identity(channels):
    torch.manual_seed(0)
    x = torch.randn(6, channels, 16, 16)
    assert torch.equal(make_pipe(0.0, **augpipe_specs["bgcfnc"])(x), x)


def test_xflip_with_certain_k_equals_flip():
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(make_pipe(xflip=1)(x, debug_percentile=0.75), x.flip(3))
    assert torch.equal(make_pipe(xflip=1)(x, debug_percentile=0.25), x)  # k = 0


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate90_with_forced_k_equals_rot90(k):
    x = torch.randn(2, 3, 8, 8)
    out = make_pipe(rotate90=1)(x, debug_percentile=(k + 0.5) / 4)
    assert torch.equal(out, torch.rot90(x, k, dims=(2, 3)))


@pytest.mark.parametrize("q, shift", [(0.9, 2), (0.1, -2)])
def test_xint_with_forced_shift_equals_reflect_padded_shift(q, shift):
    x = torch.randn(2, 1, 16, 16)
    # shift = round((2q - 1) * xint_max * size) pixels on both axes; content moves by +shift.
    assert round((2 * q - 1) * 0.125 * 16) == shift
    s = abs(shift)
    if shift > 0:
        expected = F.pad(x, (s, 0, s, 0), mode="reflect")[:, :, :16, :16]
    else:
        expected = F.pad(x, (0, s, 0, s), mode="reflect")[:, :, s:, s:]
    assert torch.equal(make_pipe(xint=1)(x, debug_percentile=q), expected)


def test_blit_ops_compose_in_order():
    x = torch.randn(1, 3, 16, 16)
    out = make_pipe(xflip=1, xint=1)(x, debug_percentile=0.9)  # flip, then shift by +2
    expected = F.pad(x.flip(3), (2, 0, 2, 0), mode="reflect")[:, :, :16, :16]
    assert torch.equal(out, expected)


def test_resampler_identity_reproduces_input():
    # Up- then downsampling with the orthogonal sym6 pair is the identity; what remains is float32
    # rounding through 12-tap filters up and down on both axes plus the bilinear taps (about 60 operations)
    # on pixels up to |x| < 5 (N(0, 1)) times sum |sym6| < 2 per pass (measured 8e-6).
    torch.manual_seed(0)
    x = torch.randn(3, 3, 16, 16)
    out = _resample(x, torch.eye(3).repeat(3, 1, 1), torch.tensor(SYM6_LOWPASS))
    torch.testing.assert_close(out, x, atol=rounding_tol(torch.float32, 60, 5 * 2**2), rtol=0)


def test_resampler_integer_shift_matches_blit():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    g_inv = _translate2d(torch.tensor([-2.0, 3.0]), torch.tensor([1.0, -1.0]))
    # Same rounding budget as the identity above: the blit is exact, the resampler rounds.
    torch.testing.assert_close(
        _resample(x, g_inv, torch.tensor(SYM6_LOWPASS)),
        _blit(x, g_inv),
        atol=rounding_tol(torch.float32, 60, 5 * 2**2),
        rtol=0,
    )


def test_resampler_rotation_of_smooth_image_matches_rot90():
    # Band-limited content is rotated accurately; the residual comes from sym6's slightly non-linear phase
    # and bilinear sampling at 2x (measured 2.5e-3 with amplitude 2).
    x = smooth_image(32)
    g_inv = _rotate2d(torch.zeros(1), torch.ones(1))
    out = _resample(x, g_inv, torch.tensor(SYM6_LOWPASS))
    assert (out - torch.rot90(x, 1, dims=(2, 3)))[..., 6:-6, 6:-6].abs().max() < 1e-2


def test_scale_enlarges_content_about_the_centre():
    q = 0.9
    s = 2 ** (normal_quantile(q) * 0.2)  # forward scale factor: output(u) = input(u / s)
    out = make_pipe(scale=1)(smooth_image(32), debug_percentile=q)
    xs, ys = centred_grid(32)
    expected = smooth_function(xs / s, ys / s)
    assert (out[0, 0] - expected)[6:-6, 6:-6].abs().max() < 2e-2


@pytest.mark.parametrize("q, k", [(0.625, -1), (0.375, 1)])
def test_rotation_pair_turns_by_twice_the_angle(q, k):
    # rotate fires twice with p = 1 (probability 1 - sqrt(1 - p) each), by theta = (2q - 1) * pi each time:
    # +-pi/4 twice is a quarter turn; a positive angle turns like torch.rot90 with k = -1.
    x = smooth_image(32)
    out = make_pipe(rotate=1)(x, debug_percentile=q)
    assert (out - torch.rot90(x, k, dims=(2, 3)))[..., 6:-6, 6:-6].abs().max() < 1e-2


# ----------------------------------------------------------------------------------------------------
# Colour.

Q = 0.8


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_adds_known_offset(channels):
    x = torch.randn(2, channels, 8, 8)
    out = make_pipe(brightness=1)(x, debug_percentile=Q)
    # One float32 addition (plus the offset's own rounding) on |x| < 5.
    torch.testing.assert_close(out, x + normal_quantile(Q) * 0.2, atol=rounding_tol(torch.float32, 2, 5), rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_contrast_scales_about_mid_gray(channels):
    x = torch.randn(2, channels, 8, 8)
    out = make_pipe(contrast=1)(x, debug_percentile=Q)
    # A float32 product through the 4x4 colour matrix (a few roundings) on |x| < 5 times a gain < 2.
    torch.testing.assert_close(
        out, x * 2 ** (normal_quantile(Q) * 0.5), atol=rounding_tol(torch.float32, 8, 10), rtol=0
    )


def test_lumaflip_reflects_luma():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out = make_pipe(lumaflip=1)(x.float(), debug_percentile=0.75)
    # Householder reflection across v = (1, 1, 1) / sqrt(3): x - 2 v (v . x).
    expected = x - 2 / 3 * x.sum(dim=1, keepdim=True)
    # float32 3x3 colour matrix (built from a few products) times 3 channels of |x| < 5, against float64.
    torch.testing.assert_close(out.double(), expected, atol=rounding_tol(torch.float32, 8, 3 * 5), rtol=0)


def test_lumaflip_on_gray_image_negates_about_mid_gray():
    x = torch.randn(2, 1, 8, 8)
    # The gray path sums the 3x3 matrix's row (3 float32 terms) and scales |x| < 5 by it.
    torch.testing.assert_close(
        make_pipe(lumaflip=1)(x, debug_percentile=0.75), -x, atol=rounding_tol(torch.float32, 4, 5), rtol=0
    )


def test_hue_rotation_by_a_third_turn_permutes_channels():
    x = torch.randn(2, 3, 8, 8)
    out = make_pipe(hue=1)(x, debug_percentile=5 / 6)  # theta = (2q - 1) * pi = 2 pi / 3
    # The rotation matrix comes from float32 cos/sin and products of 4x4 matrices (~16 roundings), applied to
    # 3 channels of |x| < 5.
    torch.testing.assert_close(out, x.roll(1, dims=1), atol=rounding_tol(torch.float32, 16, 3 * 5), rtol=0)


def test_saturation_scales_chroma_keeps_luma():
    x = torch.randn(2, 3, 8, 8)
    s = 2 ** normal_quantile(Q)
    luma = x.mean(dim=1, keepdim=True)
    out = make_pipe(saturation=1)(x, debug_percentile=Q)
    # float32 matrices as for hue (~16 roundings) on 3 channels of |x| < 5 scaled by s < 3.
    torch.testing.assert_close(out, luma + s * (x - luma), atol=rounding_tol(torch.float32, 16, 3 * 5 * 3), rtol=0)


def test_gray_and_rgb_agree_on_gray_images():
    torch.manual_seed(3)
    gray = torch.randn(16, 1, 8, 8)
    ops = dict(brightness=1, contrast=1, lumaflip=1)
    torch.manual_seed(7)
    out1 = make_pipe(0.7, **ops)(gray)
    torch.manual_seed(7)
    out3 = make_pipe(0.7, **ops)(gray.repeat(1, 3, 1, 1))
    # Same draws; the RGB path sums 3 channels through the colour matrix (a few roundings on |x| < 5 times the
    # contrast gain < 4) where the gray path scales one.
    torch.testing.assert_close(out3, out1.repeat(1, 3, 1, 1), atol=rounding_tol(torch.float32, 8, 3 * 5 * 4), rtol=0)
    assert not torch.equal(out1, gray)
    # With fixed draws hue and saturation may be on too: they leave gray unchanged.
    out1 = make_pipe(**augpipe_specs["color"])(gray, debug_percentile=Q)
    out3 = make_pipe(**augpipe_specs["color"])(gray.repeat(1, 3, 1, 1), debug_percentile=Q)
    torch.testing.assert_close(
        out3, out1.repeat(1, 3, 1, 1), atol=rounding_tol(torch.float32, 16, 3 * 5 * 4), rtol=0
    )  # hue and saturation add two more 4x4 products


# ----------------------------------------------------------------------------------------------------
# Filter, noise, cutout.


def test_imgfilter_low_band_scales_a_constant_image():
    x = torch.full((1, 1, 8, 8), 0.5)
    out = make_pipe(imgfilter=1, imgfilter_bands=[1, 0, 0, 0])(x, debug_percentile=Q)
    w = IMGFILTER_EXPECTED_POWER
    g0 = 2 ** normal_quantile(Q) / math.sqrt(w[0] * 4 ** normal_quantile(Q) + sum(w[1:]))
    # Separable: gain on x and on y. float32 rounding: taps = 4-term sums, then two 43-tap passes, on values
    # up to sum |taps|^2 < 4.
    torch.testing.assert_close(out, x * g0**2, atol=rounding_tol(torch.float32, 2 * 43 + 8, 4), rtol=0)


def test_imgfilter_high_band_scales_a_checkerboard():
    i = torch.arange(8)
    x = ((-1.0) ** (i.reshape(8, 1) + i.reshape(1, 8))).reshape(1, 1, 8, 8)
    out = make_pipe(imgfilter=1, imgfilter_bands=[0, 0, 0, 1])(x, debug_percentile=Q)
    w = IMGFILTER_EXPECTED_POWER
    z = normal_quantile(Q)
    g3 = 2**z / math.sqrt(w[3] * 4**z + w[0] + w[1] + w[2])
    # As above: two 43-tap float32 passes on values up to sum |taps|^2 < 4 (measured 1.2e-6; a last-bit 1e-6
    # failed on AMD CPUs).
    torch.testing.assert_close(out, x * g3**2, atol=rounding_tol(torch.float32, 2 * 43 + 8, 4), rtol=0)


def test_imgfilter_keeps_expected_power_normalised():
    # Neutral draws (q = 0.5 -> every gain 2^0) leave the image untouched, bit-exactly: the filter is skipped.
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(make_pipe(imgfilter=1)(x, debug_percentile=0.5), x)


def test_noise_std_matches():
    torch.manual_seed(0)
    x = torch.zeros(4000, 1, 4, 4)
    out = make_pipe(noise=1)(x)
    # sigma = |N(0, 1)| * 0.1, so E[out^2] = 0.1^2 and E[per-sample std] = 0.1 * sqrt(2 / pi).
    # Sampling error, not rounding: E[out^2] averages 4000 chi^2(1) draws of sigma^2 (relative std sqrt(2 / 4000)
    # = 2.2%, so rel=0.1 is 4.5 sigma); the firing rate is binomial (std sqrt(0.25 / 4000) = 0.008, abs=0.05).
    assert out.square().mean().item() == pytest.approx(0.01, rel=0.1)
    out = make_pipe(0.5, noise=1)(x)
    assert (out.flatten(1).abs().amax(dim=1) > 0).float().mean().item() == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("q, zeroed", [(0.5, 8 * 8), (0.9, 6 * 6)])
def test_cutout_zeroes_the_expected_square(q, zeroed):
    x = torch.ones(2, 3, 16, 16)
    out = make_pipe(cutout=1)(x, debug_percentile=q)
    # Square of side 0.5 * 16 centred at (q, q): pixel centres within 4 px of 16 q.
    assert (out == 0).sum(dim=(2, 3)).eq(zeroed).all()
    assert torch.equal(out[out != 0], x[out != 0])


def test_cutout_fires_with_probability_p():
    torch.manual_seed(0)
    out = make_pipe(0.3, cutout=1)(torch.ones(4000, 1, 8, 8))
    # Binomial sampling error: std sqrt(0.3 * 0.7 / 4000) = 0.0072, so abs=0.03 is 4 sigma.
    assert (out == 0).flatten(1).any(dim=1).float().mean().item() == pytest.approx(0.3, abs=0.03)


# ----------------------------------------------------------------------------------------------------
# Randomness and gradients.


def test_same_seed_same_augmentation():
    x = torch.randn(8, 3, 16, 16)
    pipe = make_pipe(0.8, **augpipe_specs["bgcfnc"])
    torch.manual_seed(11)
    a = pipe(x)
    torch.manual_seed(11)
    b = pipe(x)
    torch.manual_seed(12)
    c = pipe(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("channels", [1, 3])
def test_full_pipeline_runs_on_gray_and_rgb(channels):
    torch.manual_seed(0)
    x = torch.randn(8, channels, 16, 16)
    out = make_pipe(1.0, **augpipe_specs["bgcfnc"])(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.equal(out, x)


def test_r1_double_backward_through_geometry():
    torch.manual_seed(0)
    pipe = make_pipe(1.0, **augpipe_specs["bgcf"])
    conv = torch.nn.Conv2d(3, 4, 3)
    real = torch.randn(4, 3, 16, 16, requires_grad=True)
    logits = torch.tanh(conv(pipe(real))).sum()
    (grad,) = torch.autograd.grad(logits, real, create_graph=True)
    penalty = grad.square().sum()
    penalty.backward()
    assert grad.abs().sum() > 0
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0


def test_geometry_gradients_are_exact_to_second_order():
    # Fixed draws make the pipe a linear map of the image; gradcheck and gradgradcheck compare autograd's
    # first and second-order products with finite differences in float64.
    pipe = make_pipe(1.0, scale=1, rotate=1, xfrac=1, brightness=1)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)

    def fn(img):
        return pipe(img, debug_percentile=0.7)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ----------------------------------------------------------------------------------------------------
# The fixed-shape form (no host reads: what a CUDA graph needs) against the default per-subset form.

# Both forms round through the resampler's ~60 float32 operations on pixels |x| < 5 times sum |sym6| < 2 per pass
# (the resampler's own identity budget above); the fixed form pads by a larger margin, so its sampling coordinates
# and convolutions round differently (measured 4e-5).
FORMS_TOL = rounding_tol(torch.float32, 60, 5 * 2**2)


def both_forms(preset: str, p: float, fn, seed: int = 5):
    """fn(pipe) with the default form and with fixed shapes, from the same seed; also the next draw after each."""
    results = []
    for fixed in (False, True):
        pipe = make_pipe(p, **augpipe_specs[preset])
        pipe.fixed_shapes = fixed
        torch.manual_seed(seed)
        results.append((fn(pipe), torch.rand(4)))
    return results


@pytest.mark.parametrize("preset", ["blit", "geom", "filter", "bgcfnc"])
@pytest.mark.parametrize("channels", [1, 3])
def test_fixed_shapes_draws_the_same_augmentation(preset, channels):
    # Same seed, same parameters: the fixed form consumes the RNG exactly as the default one (the next draw after
    # the pipe is the same), so the two agree sample by sample, not only in distribution.
    x = torch.randn(32, channels, 16, 16)
    (out, after), (out_fixed, after_fixed) = both_forms(preset, 0.6, lambda pipe: pipe(x))
    assert torch.equal(after, after_fixed)
    assert not torch.equal(out, x)
    if preset == "blit":
        assert torch.equal(out_fixed, out)  # gathers: exact in both forms
    torch.testing.assert_close(out_fixed, out, atol=FORMS_TOL, rtol=0)


def test_fixed_shapes_keeps_untouched_samples_exact():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16)
    pipe = make_pipe(0.0, **augpipe_specs["bgcfnc"])
    pipe.fixed_shapes = True
    assert torch.equal(pipe(x), x)


def test_fixed_shapes_gives_the_same_r1_gradients():
    x = torch.randn(8, 1, 16, 16)
    weight = torch.randn(1, 1, 16, 16)

    def r1_grads(pipe):
        img = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.tanh(pipe(img) * weight).sum(), img, create_graph=True)
        (grad2,) = torch.autograd.grad(grad.square().sum(), img)
        return grad, grad2

    ((g1, h1), _), ((g2, h2), _) = both_forms("bgcf", 0.7, r1_grads)
    # The adjoint resampler rounds as the forward one does (same budget); tanh' <= 1 and |weight| < 5 scale it, and
    # the second-order term multiplies by one more such factor.
    torch.testing.assert_close(g2, g1, atol=FORMS_TOL * 5, rtol=0)
    torch.testing.assert_close(h2, h1, atol=FORMS_TOL * 5**3, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_fixed_shapes_never_touches_the_host(channels):
    # On the meta device every read of a value raises, and forbid_host_access also refuses host tensors and host
    # data copied to the device: the pipe with its R1 double backward could be captured in a CUDA graph.
    pipe = AugmentPipe(**augpipe_specs["bgcfnc"]).to("meta")
    pipe.fixed_shapes = True
    x = torch.empty(4, channels, 16, 16, device="meta", requires_grad=True)
    pipe(x)  # warm-up: fills the cache of device constants, as a CUDA graph's warm-up does
    with forbid_host_access():
        out = pipe(x)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        grad.square().sum().backward()
    assert out.shape == x.shape and x.grad.shape == x.shape
    pipe.fixed_shapes = False
    with pytest.raises(NotImplementedError, match="nonzero"):  # the default form reads which samples drew an op
        pipe(x)


# ----------------------------------------------------------------------------------------------------
# The controller.


def test_controller_moves_p_by_the_closed_form_step():
    pipe = AugmentPipe(xflip=1)
    ada = AdaController(target=0.6, batch_size=64, interval=4, ada_kimg=500)
    step = 64 * 4 / (500 * 1000)
    for _ in range(3):
        ada.accumulate(torch.tensor([[1.0], [2.0], [-1.0], [3.0]]))  # r_t = 0.5 < target
        assert not ada.step(pipe)
    ada.accumulate(torch.ones(4, 1))
    assert ada.step(pipe)
    assert ada.r_t == pytest.approx((3 * 2 + 4) / 16)  # 0.625 > 0.6 -> up
    assert pipe.p.item() == pytest.approx(step, rel=rounding_tol(torch.float32, 2))  # one float32 add, stored
    for _ in range(8):
        ada.accumulate(-torch.ones(4, 1))
        ada.step(pipe)
    assert ada.r_t == -1 and pipe.p.item() == 0  # one step down, then clamped at 0
    ada.step(pipe), ada.step(pipe), ada.step(pipe)
    pipe.p.fill_(0.5)
    assert ada.step(pipe)  # an interval without scored reals: p and r_t stay
    assert ada.r_t == -1 and pipe.p.item() == 0.5


def test_controller_step_never_reads_the_device():
    # On the meta device any host read of a value raises: the adjustment of p stays on p's device.
    pipe = AugmentPipe(xflip=1).to("meta")
    ada = AdaController(target=0.6, batch_size=64, interval=2)
    for _ in range(4):
        ada.accumulate(torch.empty(4, 1, device="meta"))
        ada.step(pipe)
    assert pipe.p.device.type == "meta"


def test_controller_accumulates_in_place():
    # A phase captured as a CUDA graph replays its writes into the memory it wrote at capture: the sums live in one
    # tensor, from the first score to the adjustment that reads and clears them.
    pipe = AugmentPipe(xflip=1)
    ada = AdaController(target=0.6, batch_size=4, interval=2)
    ada.accumulate(torch.ones(3))
    stats = ada._stats
    ada.accumulate(-torch.ones(1, 1))
    assert ada._stats is stats and stats.tolist() == [2, 4]
    assert not ada.step(pipe) and ada.step(pipe)
    assert ada._stats is stats and stats.tolist() == [0, 0] and ada.r_t == 0.5


def test_controller_clamps_at_p_max_and_warns_once():
    pipe = AugmentPipe(xflip=1)
    ada = AdaController(target=0.6, batch_size=1000, interval=1, ada_kimg=1, p_max=0.9)  # step 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # step never reads p back (no device sync), so it cannot warn
        ada.accumulate(torch.ones(3))
        ada.step(pipe)
    assert pipe.p.item() == pytest.approx(0.9, rel=rounding_tol(torch.float32, 1))  # stored in float32
    with pytest.warns(UserWarning, match="exceeds 0.8"):
        ada.warn_if_high(pipe.p.item())  # the loop's tick does this
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ada.warn_if_high(pipe.p.item())


def test_controller_resumes_mid_interval():
    logits = [torch.tensor([1.0, -1.0, 1.0]), torch.tensor([1.0, 1.0]), torch.tensor([-2.0])]
    pipe_a, pipe_b = AugmentPipe(xflip=1), AugmentPipe(xflip=1)
    a = AdaController(target=0.2, batch_size=32, interval=3)
    for t in logits[:2]:
        a.accumulate(t)
        a.step(pipe_a)
    b = AdaController(target=0.2, batch_size=32, interval=3)
    b.load_state_dict(a.state_dict())
    pipe_b.load_state_dict(pipe_a.state_dict())
    for ctrl, pipe in ((a, pipe_a), (b, pipe_b)):
        ctrl.accumulate(logits[2])
        assert ctrl.step(pipe)
    assert a.r_t == b.r_t == pytest.approx(2 / 6)
    # Exact equality between the runs: the same code on the same machine; float32 p against the closed form.
    assert pipe_a.p.item() == pipe_b.p.item() == pytest.approx(32 * 3 / 500_000, rel=rounding_tol(torch.float32, 2))


def test_fixed_p_mode():
    pipe = AugmentPipe(xflip=1)
    pipe.set_p(0.3)
    assert pipe.p.item() == pytest.approx(0.3, rel=rounding_tol(torch.float32, 1))  # stored in float32
    with pytest.raises(ValueError, match="p must be >= 0"):
        pipe.set_p(-0.1)
