"""The reference path of upfirdn2d (plain PyTorch, differentiable to any order), shared by the public op in
`upfirdn2d.py` and the CPU kernel of the registered op `spinegan::upfirdn2d` in `upfirdn2d_cuda.py`."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class _AxisPlan:
    """How one spatial axis maps onto a (transposed) convolution with symmetric padding.

    The input is first cropped to [in_start, in_stop), then zero-padded by `pre_pad` on each side if the
    convolution's symmetric padding cannot express the request, convolved with padding `conv_pad`, and
    the result is finally cropped to [out_start, out_start + out_len * out_step) with step `out_step`.
    """

    in_start: int
    in_stop: int
    pre_pad: tuple[int, int]
    conv_pad: int
    out_start: int
    out_len: int
    out_step: int


def _plan_axis(size: int, taps: int, up: int, down: int, pad0: int, pad1: int, transposed: bool) -> _AxisPlan:
    """Plan one axis of upfirdn (see _AxisPlan); all arithmetic in (upsampled) sample units.

    `transposed` says whether the pass is a transposed convolution (both axes share one call, so an
    axis with up == 1 may still go through it).
    """
    full_len = size * up + pad0 + pad1 - taps + 1  # length before downsampling
    if full_len <= 0:
        raise ValueError(
            f"upfirdn2d: the filter ({taps} taps) is longer than the padded, upsampled input"
            f" ({size} * {up} + {pad0} + {pad1} samples)"
        )
    out_len = (full_len - 1) // down + 1
    if transposed:
        # Transposed convolution with stride `up` yields the fully-padded result t of length
        # (size - 1) * up + taps; the requested signal is t[taps - 1 - pad0 : size * up + pad1].
        crop0, crop1 = taps - 1 - pad0, taps - up - pad1
        conv_pad = max(0, min(crop0, crop1))
        pre = (max(0, -crop0), max(0, -crop1))  # zeros the crop cannot provide
        start = crop0 - conv_pad + pre[0]
        return _AxisPlan(0, size, pre, conv_pad, start, out_len, down)
    # Plain (strided) convolution: crop negative pads on the input, then pad symmetrically.
    in_start, in_stop = max(0, -pad0), size - max(0, -pad1)
    pad0, pad1 = max(0, pad0), max(0, pad1)
    if pad0 >= pad1:
        return _AxisPlan(in_start, in_stop, (0, 0), pad0, 0, out_len, 1)  # trailing extra outputs are cut off
    extra = pad1 - pad0
    if extra % down == 0:
        return _AxisPlan(in_start, in_stop, (0, 0), pad1, extra // down, out_len, 1)  # leading extra cut off
    return _AxisPlan(in_start, in_stop, (0, extra), pad0, 0, out_len, 1)


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
    flip_filter: bool,
    gain: float,
) -> torch.Tensor:
    """Reference upfirdn2d from depthwise (transposed) convolutions; differentiable to any order."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, padding
    f = f.to(dtype=x.dtype, device=x.device)
    if f.ndim == 1:
        g = f * (gain**0.5)
        x = _fir_pass(x, g.reshape(1, -1), (1, upx), (1, downx), ((0, 0), (px0, px1)), flip_filter)
        return _fir_pass(x, g.reshape(-1, 1), (upy, 1), (downy, 1), ((py0, py1), (0, 0)), flip_filter)
    return _fir_pass(x, f * gain, (upy, upx), (downy, downx), ((py0, py1), (px0, px1)), flip_filter)


def _fir_pass(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    flip_filter: bool,
) -> torch.Tensor:
    """One depthwise FIR pass with the 2-D kernel `f`; `up`, `down`, `pads` are (y, x).

    When autograd records it, the pass is a `_FirPass` Function whose gradient is again a FIR pass.
    Autograd through the grouped convolution itself would work too, but PyTorch evaluates the second-order
    terms of a grouped convolution as one convolution per channel, which made R1 and path-length
    regularisation several times slower on CPU.
    """
    if torch.is_grad_enabled() and x.requires_grad and not f.requires_grad:
        return _FirPass.apply(x, f, up, down, pads, flip_filter)
    return _fir_pass_forward(x, f, up, down, pads, flip_filter)


class _FirPass(torch.autograd.Function):
    """A FIR pass differentiable to any order: the input gradient is the transposed pass (up and down
    swapped, filter flip toggled, padding recomputed). There is no gradient w.r.t. the filter."""

    generate_vmap_rule = True  # new-style (setup_context) so torch.func transforms (DP-SGD) can trace it

    @staticmethod
    def forward(x, f, up, down, pads, flip_filter):
        return _fir_pass_forward(x, f, up, down, pads, flip_filter)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, f, up, down, pads, flip_filter = inputs
        ctx.save_for_backward(f)
        ctx.conf = (up, down, pads, flip_filter, tuple(x.shape[2:]), tuple(output.shape[2:]))

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        up, down, pads, flip_filter, in_size, out_size = ctx.conf
        # Per axis: the forward reads in_size * up + p0 + p1 samples; the transposed pass upsamples the
        # output gradient by `down` and pads it so that its filter windows land on the same samples.
        t_pads = tuple(
            (f.shape[i] - pads[i][0] - 1, in_size[i] * up[i] - out_size[i] * down[i] + pads[i][0] - up[i] + 1)
            for i in range(2)
        )
        return _fir_pass(dy, f, down, up, t_pads, not flip_filter), None, None, None, None, None


def _fir_pass_forward(
    x: torch.Tensor,
    f: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    flip_filter: bool,
) -> torch.Tensor:
    """The FIR pass as one depthwise (transposed) convolution."""
    batch, channels = x.shape[:2]
    # oneDNN convolves 1-4 channels (images in the augment pipe, to-RGB outputs) with a generic kernel 3-10x slower
    # than its depthwise one on the same data: filter the batch as channels of one sample instead (a view when the
    # batch and channel strides chain, as in an NCHW tensor or a spatial crop of one).
    fold = x.device.type == "cpu" and batch > 1 and channels <= 4 and x.stride(0) == channels * x.stride(1)
    if fold:
        x = x.reshape(1, batch * channels, *x.shape[2:])
        channels = batch * channels
    transposed = up != (1, 1)
    ph, pw = (_plan_axis(x.shape[2 + i], f.shape[i], up[i], down[i], *pads[i], transposed) for i in range(2))
    if (ph.in_start, ph.in_stop, pw.in_start, pw.in_stop) != (0, x.shape[2], 0, x.shape[3]):
        x = x[:, :, ph.in_start : ph.in_stop, pw.in_start : pw.in_stop]
    # conv2d correlates, so a true convolution needs the flipped kernel; conv_transpose2d scatters,
    # which is already a convolution, so there it is the other way round.
    if flip_filter == transposed:
        f = f.flip([0, 1])
    # A materialised (not expanded) weight: oneDNN's depthwise kernels are up to 2x slower on a stride-0 one.
    weight = f[None, None].expand(channels, 1, *f.shape).contiguous()
    if transposed:
        x = _depthwise_conv_transpose2d(x, weight, up, (ph.conv_pad, pw.conv_pad))
        x = _zero_pad(x, ph.pre_pad, pw.pre_pad)
    else:
        x = _zero_pad(x, ph.pre_pad, pw.pre_pad)
        x = F.conv2d(x, weight, stride=down, padding=(ph.conv_pad, pw.conv_pad), groups=channels)
    sh, sw = (slice(p.out_start, p.out_start + (p.out_len - 1) * p.out_step + 1, p.out_step) for p in (ph, pw))
    if (sh.start, sh.stop, sh.step, sw.start, sw.stop, sw.step) != (0, x.shape[2], 1, 0, x.shape[3], 1):
        x = x[:, :, sh, sw]
    return x.reshape(batch, -1, *x.shape[2:]) if fold else x


def _depthwise_conv_transpose2d(
    x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int]
) -> torch.Tensor:
    """F.conv_transpose2d with groups = channels; on a CPU as a plain depthwise conv2d of the zero-stuffed input
    (NHWC, which the stuffing copy lays out at no extra cost) with the flipped kernel: PyTorch's CPU depthwise
    transposed convolution takes a generic path, 10-40x slower in bf16 and up to several times in fp32 NCHW.
    Not under torch.func transforms (DP-SGD's per-sample gradients): the stuffing writes in place."""
    kh, kw = weight.shape[2:]
    (sy, sx), (py, px) = stride, padding
    if not (x.device.type == "cpu" and py < kh and px < kw) or torch._C._are_functorch_transforms_active():
        return F.conv_transpose2d(x, weight, stride=stride, padding=padding, groups=x.shape[1])
    n, c, h, w = x.shape
    stuffed = torch.empty(
        [n, c, (h - 1) * sy + 1, (w - 1) * sx + 1], dtype=x.dtype, device=x.device, memory_format=torch.channels_last
    ).zero_()
    stuffed[:, :, ::sy, ::sx] = x
    return F.conv2d(stuffed, weight.flip([2, 3]), padding=(kh - 1 - py, kw - 1 - px), groups=c)


def _zero_pad(x: torch.Tensor, pad_h: tuple[int, int], pad_w: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the two spatial axes; a no-op (no copy) when nothing is to be padded."""
    if pad_h == (0, 0) and pad_w == (0, 0):
        return x
    return F.pad(x, [pad_w[0], pad_w[1], pad_h[0], pad_h[1]])
