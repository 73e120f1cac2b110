"""StyleGAN2-ADA generator and discriminator with the official module names, state_dict keys and semantics.

Written from a facts-only description of the official networks (names, shapes, formulas), so that
official network snapshots load into these modules by name (see `training.serialization`) and reproduce the
official outputs. Deviations are speed-only and keep the math identical:
  * the demodulation coefficients are computed from per-(out, in) squared weight sums, so the
    [batch, out, in, k, k] modulated weight is built only when the fused (grouped-conv) form needs it;
  * on CPU the fused form is used only for a batch of one (grouped convs are slow there);
  * fp16 blocks compute in fp16 only on CUDA, as in StyleGAN3, so CPU inference works; on a CPU with native
    bfloat16 they train in bf16 (`_block_precision`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch

import dnnlib
from torch_utils import misc, precision
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d

DEFAULT_FILTER = (1, 3, 3, 1)
SQRT_HALF = math.sqrt(0.5)


NOISE_MODES = ("const", "random", "none")  # noise inputs: the fixed buffer, fresh per call, or none


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector along `dim` to unit root-mean-square (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _block_precision(
    use_fp16: bool, channels_last: bool, force_fp32: bool, device: torch.device, training: bool
) -> tuple[torch.dtype, torch.memory_format]:
    """Compute dtype and memory format of a block.

    Blocks marked fp16 compute in fp16 on CUDA (NHWC with `channels_last`), as in the official code; on a CPU with
    native bf16 they compute in bf16, NHWC, while training (G and D in train mode; see `torch_utils.precision`).
    At inference (eval mode: G_ema, generate.py, metrics) and under torch.func transforms a CPU stays in fp32, so
    that images and metrics from a given snapshot are the same on every CPU; outputs are float32 either way.
    """
    dtype = precision.reduced_dtype(device) if use_fp16 and not force_fp32 else None
    if dtype == torch.bfloat16 and (not training or torch._C._are_functorch_transforms_active()):
        dtype = None  # torch.func (DP-SGD's per-sample gradients) hides the batch dimension that NHWC needs
    if dtype is None:
        return torch.float32, torch.contiguous_format
    if dtype == torch.bfloat16:
        return dtype, torch.channels_last  # oneDNN's bf16 kernels, the FIR's depthwise ones above all, want NHWC
    return dtype, torch.channels_last if channels_last else torch.contiguous_format


def precision_summary(networks: dict[str, torch.nn.Module], device: torch.device) -> str:
    """One log line: which blocks of the named networks train in reduced precision on `device`, and why.

    E.g. 'bf16 blocks: G 8, 16, 32; D 32, 16, 8 (avx512_bf16)'.
    """
    marked = {
        name: [
            block.resolution
            for block in net.modules()
            if isinstance(block, (SynthesisBlock, DiscriminatorBlock)) and block.use_fp16
        ]
        for name, net in networks.items()
    }
    if not any(marked.values()):
        return "Mixed precision: off (no blocks marked for it: --fp32 or num_fp16_res=0)"
    dtype = precision.reduced_dtype(device)
    if dtype is None:
        return f"Mixed precision: off (fp32 everywhere: no native reduced precision on {device.type})"
    reason = "CUDA" if device.type == "cuda" else precision.cpu_bf16_reason()
    blocks = "; ".join(f"{name} {', '.join(map(str, res))}" for name, res in marked.items() if res)
    return f"{'fp16' if dtype == torch.float16 else 'bf16'} blocks: {blocks} ({reason})"


# ----------------------------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalised learning rate: weight x lr_multiplier/sqrt(in), bias x lr_multiplier."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1,
        bias_init: float = 0,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act.bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(torch.nn.Module):
    """Convolution with equalised learning rate, optional FIR up/downsampling, bias, activation and clamp.

    `trainable=False` keeps weight and bias as buffers under the same state_dict keys (Freeze-D).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = bias_act.activation_funcs[activation].def_gain
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_init = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_init) if bias_init is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_init)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample.conv2d_resample(
            x=x,
            w=w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=(self.up == 1),
        )
        b = self.bias.to(x.dtype) if self.bias is not None else None
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


def _demodulation_coefs(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """rsqrt(sum_{in,kh,kw} (weight[o,i,kh,kw] * styles[n,i])^2 + 1e-8) as [N, out].

    Equal to the sum over the modulated weight, computed as styles^2 @ (sum_k weight^2)^T so that the
    [N, out, in, kh, kw] tensor is never built.
    """
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """StyleGAN2 weight modulation/demodulation conv of x [N,in,H,W] with per-sample styles [N,in].

    Noise (broadcastable to the output) is added before any bias. `fused_modconv` selects one grouped conv
    over per-sample weights; otherwise the input is scaled by the styles, convolved with the shared weight and
    the output scaled by the demodulation coefficients (same result).
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that the fp16 products below cannot overflow; demodulation undoes the scale. (bf16 has
        # fp32's exponent range: no overflow to guard against, so CPU training skips this.)
        weight = weight * (
            1 / math.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    dcoefs = _demodulation_coefs(weight, styles) if demodulate else None
    conv_kwargs = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)

    if fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)
        if dcoefs is not None:
            w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
        x = x.reshape(1, -1, *x.shape[2:])
        w = w.reshape(-1, in_channels, kh, kw)
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), groups=batch_size, **conv_kwargs)
        x = x.reshape(batch_size, -1, *x.shape[2:])
        return x + noise.to(x.dtype) if noise is not None else x

    x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
    x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), **conv_kwargs)
    if dcoefs is not None:
        dcoefs = dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        return fma.fma(x, dcoefs, noise.to(x.dtype)) if noise is not None else x * dcoefs
    return x + noise.to(x.dtype) if noise is not None else x


# ----------------------------------------------------------------------------------------------------------
# Mapping


class MappingNetwork(torch.nn.Module):
    """z (and embedded label c) -> w, broadcast to num_ws copies; tracks w_avg for truncation.

    With z_dim=0, num_ws=None and w_avg_beta=None it is the discriminator's label embedding (cmap).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        if z_dim + embed_features == 0:
            raise ValueError("MappingNetwork: needs z_dim > 0 or c_dim > 0 (it has no input otherwise)")
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        skip_w_avg_update: bool = False,
    ) -> torch.Tensor:
        x = self._embed_inputs(z, c)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        return x

    def _embed_inputs(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """Concatenate the normalised z and the normalised label embedding."""
        parts = []
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _truncate(self, x: torch.Tensor, psi: float, cutoff: int | None) -> torch.Tensor:
        """w_avg + (w - w_avg) * psi, for all ws or only the first `cutoff` of them."""
        if self.w_avg_beta is None:
            raise ValueError("MappingNetwork: truncation needs w_avg, but this network has w_avg_beta=None")
        if self.num_ws is None or cutoff is None:
            return self.w_avg.lerp(x, psi)
        x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], psi)
        return x


# ----------------------------------------------------------------------------------------------------------
# Synthesis


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + per-pixel noise + bias + lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True, gain: float = 1
    ) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.weight.shape[1], in_resolution, in_resolution])
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            noise = noise * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x=x,
            weight=self.weight,
            styles=styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
        )
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        )
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: [const | conv0 (up 2)], conv1, [torgb], [resnet skip]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        **layer_kwargs: Any,
    ):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"SynthesisBlock: architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        common = dict(conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                **common,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, **common, **layer_kwargs
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, **common)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=False,
                up=2,
                resample_filter=resample_filter,
                channels_last=self.channels_last,
            )

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        force_fp32: bool = False,
        fused_modconv: bool | None = None,
        **layer_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        dtype, memory_format = _block_precision(self.use_fp16, self.channels_last, force_fp32, ws.device, self.training)
        if fused_modconv is None:
            fused_modconv = self._default_fused_modconv(dtype, ws)

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=SQRT_HALF, **layer_kwargs)
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img

    def _default_fused_modconv(self, dtype: torch.dtype, ws: torch.Tensor) -> bool:
        """Official rule (inference, and fp32 or a batch of one); on CPU only for a batch of one."""
        if self.training:
            return False
        if ws.device.type == "cpu":
            return ws.shape[0] == 1
        return dtype == torch.float32 or ws.shape[0] == 1


def _channels_per_resolution(resolutions: Sequence[int], channel_base: int, channel_max: int) -> dict[int, int]:
    return {res: min(channel_base // res, channel_max) for res in resolutions}


def _fp16_resolution(img_resolution_log2: int, num_fp16_res: int) -> int:
    """Lowest resolution computed in fp16: the top `num_fp16_res` resolutions, never below 8."""
    return max(2 ** (img_resolution_log2 + 1 - num_fp16_res), 8)


def _resolution_log2(img_resolution: int, who: str) -> int:
    log2 = int(round(math.log2(img_resolution))) if img_resolution > 0 else 0
    if img_resolution < 4 or 2**log2 != img_resolution:
        raise ValueError(f"{who}: img_resolution must be a power of 2 and at least 4, got {img_resolution}")
    return log2


def valid_pose_res(pose_res: int, img_resolution: int) -> bool:
    """Whether `PoseWarp` can follow the block of this resolution: 0 (off) or a coarse block, 4 up to R / 2."""
    return pose_res == 0 or (4 <= pose_res < img_resolution and pose_res & (pose_res - 1) == 0)


class PoseWarp(torch.nn.Module):
    """An affine warp of G's coarse features, its translation, rotation and scale read from a pose code (ours, off by
    default).

    StyleGAN2 starts every image from one learned constant, so a pose (where the spine sits, its tilt and size) must
    be built by the modulated convolutions; on the phantom, whose views vary in position, angle and zoom, G drew few
    poses (the mean of many samples keeps sharp vertebrae where the real mean is a blur; docs/RESULTS.md AF). Here
    the features after one coarse block and the image so far are resampled by a per-sample affine map whose four
    parameters are a linear function of a pose code (the first w, or the normalised z: `SynthesisNetwork`); its
    weights start at zero, so G starts as without it, and the finer blocks after it render detail on the moved
    features.
    """

    def __init__(self, in_dim: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros([4, in_dim]))
        self.bias = torch.nn.Parameter(torch.zeros([4]))
        self.weight_gain = 1 / math.sqrt(in_dim)

    def theta(self, code: torch.Tensor) -> torch.Tensor:
        """[N, 2, 3] affine maps (output to input coordinates, [-1, 1] units) of pose codes [N, in_dim]."""
        tx, ty, angle, log_scale = torch.addmm(self.bias, code, self.weight.t() * self.weight_gain).unbind(1)
        scale = torch.exp(log_scale)
        cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
        return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)

    def forward(self, code: torch.Tensor, *maps: torch.Tensor | None) -> list[torch.Tensor | None]:
        """Each of `maps` ([N, C, H, W], any float dtype; None stays None: no image yet in the 'orig' and 'resnet'
        architectures) warped by the code's affine map, edges repeated."""
        theta = self.theta(code.to(torch.float32))
        warped: list[torch.Tensor | None] = []
        for x in maps:
            if x is None:
                warped.append(None)
                continue
            grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            y = torch.nn.functional.grid_sample(x.float(), grid, padding_mode="border", align_corners=False)
            warped.append(y.to(x.dtype))
        return warped


class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R] through blocks b4 ... bR; with `pose_res`, the
    features and image after block b<pose_res> are warped to a pose (`PoseWarp`) read from the first w, or, with
    `pose_z_dim`, from the latent z itself.

    The first w follows the label, so a pose read from it can differ between one latent's normal and abnormal
    renderings (docs/RESULTS.md AG), which the local class difference then turns into ghost edges; a pose read from
    z is the same under every label, as a patient's view does not depend on the diagnosis (truncation, which acts on
    ws, leaves it as drawn). ws alone do not carry z: callers with ws only (projection, style-mixing grids) get the
    mean pose, that of z = 0.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        pose_res: int = 0,
        pose_z_dim: int = 0,
        **block_kwargs: Any,
    ):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = _resolution_log2(img_resolution, "SynthesisNetwork")
        if not valid_pose_res(pose_res, img_resolution):
            raise ValueError(
                f"SynthesisNetwork: pose_res must be 0 or a power of 2 below {img_resolution}, got {pose_res}"
            )
        self.pose_res, self.pose_z_dim = pose_res, pose_z_dim
        if pose_res:
            self.pose = PoseWarp(pose_z_dim or w_dim)
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = _channels_per_resolution(self.block_resolutions, channel_base, channel_max)
        fp16_resolution = _fp16_resolution(self.img_resolution_log2, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
            )
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, pose_z: torch.Tensor | None = None, **block_kwargs: Any) -> torch.Tensor:
        """`pose_z`: the latents [N, z_dim] the ws were mapped from, read by a pose taken from z (ignored otherwise)."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # A block's torgb shares its w with the next block's conv0: advance by num_conv only.
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
            if res == self.pose_res:
                x, img = self.pose(self._pose_code(ws, pose_z), x, img)
        return img

    def _pose_code(self, ws: torch.Tensor, pose_z: torch.Tensor | None) -> torch.Tensor:
        if not self.pose_z_dim:
            return ws[:, 0]
        if pose_z is None:
            return ws.new_zeros([ws.shape[0], self.pose_z_dim])
        misc.assert_shape(pose_z, [ws.shape[0], self.pose_z_dim])
        return normalize_2nd_moment(pose_z.to(torch.float32))


class Generator(torch.nn.Module):
    """z [N, z_dim], c [N, c_dim] -> image [N, img_channels, R, R] (float32, about [-1, 1])."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
    ):
        super().__init__()
        mapping_kwargs = dnnlib.EasyDict(copy.deepcopy(mapping_kwargs or {}))
        synthesis_kwargs = dnnlib.EasyDict(copy.deepcopy(synthesis_kwargs or {}))
        self.init_kwargs = dnnlib.EasyDict(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=mapping_kwargs,
            synthesis_kwargs=synthesis_kwargs,
        )
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None,
        truncation_psi: float = 1,
        truncation_cutoff: int | None = None,
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        """`synthesis_kwargs`: noise_mode ('random'|'const'|'none'), force_fp32, fused_modconv."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, pose_z=z, **synthesis_kwargs)


# ----------------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the discriminator: [fromrgb], conv0, conv1 (down 2), [resnet skip].

    Layers are numbered globally from `first_layer_idx` in creation order; those below `freeze_layers` keep
    their weights as buffers (Freeze-D).
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ):
        super().__init__()
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"DiscriminatorBlock: in_channels must be 0 or {tmp_channels}, got {in_channels}")
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(
                f"DiscriminatorBlock: architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}"
            )
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(resample_filter))
        self.num_layers = 0

        def layer(*args: Any, **kwargs: Any) -> Conv2dLayer:
            trainable = first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(
                *args, trainable=trainable, conv_clamp=conv_clamp, channels_last=self.channels_last, **kwargs
            )

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1, activation=activation)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, activation=activation)
        self.conv1 = layer(
            tmp_channels, out_channels, kernel_size=3, activation=activation, down=2, resample_filter=resample_filter
        )
        if architecture == "resnet":
            self.skip = layer(
                tmp_channels, out_channels, kernel_size=1, bias=False, down=2, resample_filter=resample_filter
            )

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, force_fp32: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = (x if x is not None else img).device
        dtype, memory_format = _block_precision(self.use_fp16, self.channels_last, force_fp32, device, self.training)
        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=SQRT_HALF)
            x = self.conv0(x)
            x = self.conv1(x, gain=SQRT_HALF)
            x = y + x
        else:
            x = self.conv0(x)
            x = self.conv1(x)
        return x, img


class MinibatchStdLayer(torch.nn.Module):
    """Append `num_channels` feature maps holding the std over groups of `group_size` samples.

    Sample n belongs to group n % (N / G). The std is averaged over each channel slice and the pixels.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        if n % g != 0:
            raise ValueError(f"MinibatchStdLayer: batch size {n} must be divisible by the group size {g}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)
        y = y.repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(torch.nn.Module):
    """The 4x4 head ('b4', always fp32): [fromrgb], [mbstd], conv, fc, out, [projection on cmap]."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(
        self, x: torch.Tensor, img: torch.Tensor | None, cmap: torch.Tensor | None, force_fp32: bool = False
    ) -> torch.Tensor:
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if cmap is not None:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(torch.nn.Module):
    """img [N, img_channels, R, R], c [N, c_dim] -> logits [N, 1] (label conditioning by projection)."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ):
        super().__init__()
        block_kwargs = dnnlib.EasyDict(copy.deepcopy(block_kwargs or {}))
        mapping_kwargs = dnnlib.EasyDict(copy.deepcopy(mapping_kwargs or {}))
        epilogue_kwargs = dnnlib.EasyDict(copy.deepcopy(epilogue_kwargs or {}))
        self.init_kwargs = dnnlib.EasyDict(
            c_dim=c_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            architecture=architecture,
            channel_base=channel_base,
            channel_max=channel_max,
            num_fp16_res=num_fp16_res,
            conv_clamp=conv_clamp,
            cmap_dim=cmap_dim,
            block_kwargs=block_kwargs,
            mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs,
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = _resolution_log2(img_resolution, "Discriminator")
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(self.img_resolution_log2, 2, -1)]
        channels = _channels_per_resolution(self.block_resolutions + [4], channel_base, channel_max)
        fp16_resolution = _fp16_resolution(self.img_resolution_log2, num_fp16_res)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                resolution=res,
                first_layer_idx=layer_idx,
                use_fp16=(res >= fp16_resolution),
                **block_kwargs,
                **common,
            )
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(
                z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs
            )
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None, **block_kwargs: Any) -> torch.Tensor:
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
