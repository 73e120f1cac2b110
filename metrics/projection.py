"""Projection of real images into a generator's W space (latent optimisation), as NVIDIA's projector does it.

One w [1, w_dim] per target, broadcast to all num_ws, starts at the mean w of the target's class (10,000 z drawn
with RandomState(123)) and is fitted with Adam(0.9, 0.999) to minimise the squared perceptual distance between the
synthesised and the target image (images above 256 px area-resized to 256 first), plus 1e5 x a regulariser that
keeps the per-layer noise maps uncorrelated (squared shift-1 autocorrelations over a pyramid down to 8 px; the maps
are renormalised to zero mean and unit variance after each step). The learning rate ramps up linearly over the
first 5% of the steps and down along a cosine over the last 25%; Gaussian noise of w_std x 0.05 x
max(0, 1 - t / 0.75)^2 is added to w during the optimisation. With a batch of targets each has its own w and the
noise maps stay as they are (`optimize_noise=False`): the maps are shared by the whole batch.

The class of a conditional generator's target is given, or fitted: the class whose mean-w image is nearest to the
target in the same distance (c_dim forward passes). Only the start depends on the class: w itself is free.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from metrics.detectors import Detector
from metrics.perceptual import squared_distance

W_AVG_SEED = 123  # RandomState of the z that estimate the start w and its spread (as NVIDIA's projector)
MAX_DISTANCE_SIZE = 256  # images above this are area-resized before the distance


@dataclasses.dataclass(frozen=True)
class ProjectionOptions:
    """NVIDIA's projector hyperparameters (defaults) and what the caller chooses."""

    num_steps: int = 1000
    w_avg_samples: int = 10000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    optimize_noise: bool = True  # single targets only: the noise maps belong to the network, not to a target
    keep_steps: bool = False  # keep every step's ws (for the video)
    seed: int = 303  # of the w noise and the initial noise maps


@dataclasses.dataclass
class Projection:
    """ws [N, num_ws, w_dim] at the end, the class used per target (None: unconditional), the final distance per
    target [N] (at the fitted w, no w noise), the generator with the fitted noise maps, and with keep_steps every
    step's ws [steps, N, num_ws, w_dim]."""

    ws: torch.Tensor
    classes: list[int] | None
    distances: torch.Tensor
    G: torch.nn.Module  # a copy of the generator holding the fitted noise maps (renders ws as fitted)
    steps: torch.Tensor | None = None


def to_distance_input(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> [0, 255] floats, area-resized to 256 px when larger."""
    img = (img + 1) * (255 / 2)
    if img.shape[2] > MAX_DISTANCE_SIZE:
        img = F.interpolate(img, size=(MAX_DISTANCE_SIZE, MAX_DISTANCE_SIZE), mode="area")
    return img


def one_hot(G: torch.nn.Module, classes: list[int] | None, num: int, device: torch.device) -> torch.Tensor:
    c = torch.zeros([num, G.c_dim], device=device)
    if classes is not None:
        c[torch.arange(num), torch.tensor(classes)] = 1
    return c


@torch.no_grad()
def w_statistics(
    G: torch.nn.Module, class_idx: int | None, num_samples: int, device: torch.device
) -> tuple[torch.Tensor, float]:
    """(mean w [w_dim], its spread sqrt(E|w - mean|^2)) of `num_samples` z from RandomState(W_AVG_SEED)."""
    z = torch.from_numpy(np.random.RandomState(W_AVG_SEED).randn(num_samples, G.z_dim)).to(device, torch.float32)
    c = one_hot(G, None if class_idx is None else [class_idx] * num_samples, num_samples, device)
    w = G.mapping(z, c)[:, 0, :].to(torch.float64)
    w_avg = w.mean(dim=0)
    w_std = float(((w - w_avg).square().sum() / num_samples) ** 0.5)
    return w_avg.to(torch.float32), w_std


def synthesize(G: torch.nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Image of one w per row [N, w_dim] broadcast to all num_ws (noise const: the network's maps)."""
    return G.synthesis(w.unsqueeze(1).repeat([1, G.num_ws, 1]), noise_mode="const", force_fp32=True)


@torch.no_grad()
def fit_classes(
    G: torch.nn.Module, target_features: torch.Tensor, distance: Detector, stats: dict[int, tuple[torch.Tensor, float]]
) -> list[int]:
    """Per target, the class whose mean-w image is nearest in `distance`."""
    keys = sorted(stats)
    starts = torch.stack([stats[k][0] for k in keys])
    features = distance.extract(to_distance_input(synthesize(G, starts)))
    d = torch.stack([squared_distance(target_features, f.expand_as(target_features)) for f in features], dim=1)
    return [keys[i] for i in d.argmin(dim=1).tolist()]


def noise_buffers(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")}


def noise_regularization(buffers: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over maps and pyramid levels (down to 8 px) of the squared shift-1 autocorrelations along x and y."""
    total: torch.Tensor | float = 0.0
    for buf in buffers.values():
        v = buf[None, None]
        while True:
            total = total + (v * torch.roll(v, shifts=1, dims=3)).mean().square()
            total = total + (v * torch.roll(v, shifts=1, dims=2)).mean().square()
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return torch.as_tensor(total)


@torch.no_grad()
def renormalize(buffers: dict[str, torch.Tensor]) -> None:
    for buf in buffers.values():
        buf -= buf.mean()
        buf *= buf.square().mean().rsqrt()


def learning_rate(opts: ProjectionOptions, t: float) -> float:
    """Linear ramp-up over the first lr_rampup_length, cosine ramp-down over the last lr_rampdown_length."""
    ramp = min(1.0, (1.0 - t) / opts.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / opts.lr_rampup_length)
    return opts.initial_learning_rate * ramp


def starting_points(
    G: torch.nn.Module, target_features: torch.Tensor, distance: Detector, num_samples: int, classes: list[int] | None
) -> tuple[torch.Tensor, torch.Tensor, list[int] | None]:
    """(start w [N, w_dim], w spread [N, 1], class per target or None) of each target: its class's mean w."""
    num, device = target_features.shape[0], target_features.device
    if G.c_dim == 0:
        w_avg, w_std = w_statistics(G, None, num_samples, device)
        return w_avg.expand(num, -1), torch.full([num, 1], w_std, device=device), None
    if classes is not None and (len(classes) != num or not all(0 <= k < G.c_dim for k in classes)):
        raise ValueError(f"classes {classes}: expected one class in 0..{G.c_dim - 1} per target ({num})")
    wanted = range(G.c_dim) if classes is None else sorted(set(classes))
    stats = {k: w_statistics(G, k, num_samples, device) for k in wanted}
    classes = fit_classes(G, target_features, distance, stats) if classes is None else list(classes)
    return (
        torch.stack([stats[k][0] for k in classes]),
        torch.tensor([[stats[k][1]] for k in classes], device=device),
        classes,
    )


def project(
    G: torch.nn.Module,
    targets: torch.Tensor,
    distance: Detector,
    opts: ProjectionOptions,
    classes: list[int] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> Projection:
    """Fit one w per target image (uint8-range floats [N, C, R, R], the generator's channels and resolution).

    `classes`: the class per target of a conditional generator (None: fitted); ignored for unconditional ones.
    `progress(step, mean distance)` is called after every step. The caller's G is left unchanged.
    """
    device = targets.device
    num = targets.shape[0]
    if tuple(targets.shape[1:]) != (G.img_channels, G.img_resolution, G.img_resolution):
        raise ValueError(
            f"targets of shape {list(targets.shape[1:])}; the generator makes "
            f"{[G.img_channels, G.img_resolution, G.img_resolution]}"
        )
    if opts.optimize_noise and num != 1:
        raise ValueError("optimize_noise needs a single target: the noise maps are shared by the batch")
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    with torch.no_grad():
        target_features = distance.extract(to_distance_input(targets / 127.5 - 1))
    starts, stds, classes = starting_points(G, target_features, distance, opts.w_avg_samples, classes)
    generator = torch.Generator(device=device).manual_seed(opts.seed)
    buffers = noise_buffers(G)
    w_opt = starts.detach().clone().requires_grad_(True)
    params = [w_opt]
    if opts.optimize_noise:
        for buf in buffers.values():
            buf.copy_(torch.randn(buf.shape, generator=generator, device=device))
            buf.requires_grad_(True)
        params += list(buffers.values())
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=opts.initial_learning_rate)
    steps = []
    for step in range(opts.num_steps):
        t = step / opts.num_steps
        noise_scale = stds * opts.initial_noise_factor * max(0.0, 1.0 - t / opts.noise_ramp_length) ** 2
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(opts, t)
        w_noise = torch.randn(w_opt.shape, generator=generator, device=device) * noise_scale
        synth = to_distance_input(synthesize(G, w_opt + w_noise))
        dist = squared_distance(target_features, distance.extract(synth))
        loss = dist.sum()
        if opts.optimize_noise:
            loss = loss + noise_regularization(buffers) * opts.regularize_noise_weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if opts.optimize_noise:
            renormalize(buffers)
        if opts.keep_steps:
            steps.append(w_opt.detach().unsqueeze(1).repeat([1, G.num_ws, 1]).cpu())
        if progress is not None:
            progress(step, float(dist.detach().mean()))
    for buf in buffers.values():
        buf.requires_grad_(False)
    with torch.no_grad():
        final = squared_distance(target_features, distance.extract(to_distance_input(synthesize(G, w_opt))))
    return Projection(
        ws=w_opt.detach().unsqueeze(1).repeat([1, G.num_ws, 1]),
        classes=classes,
        distances=final.detach(),
        G=G,
        steps=torch.stack(steps) if steps else None,
    )
