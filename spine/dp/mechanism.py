"""The Gaussian mechanism of DP-SGD: per-unit clipping, summing, Gaussian noise.

Given per-sample gradients g_i (one row per real image) and the privacy unit u(i) of each image (the image
itself, or its study), the private sum is

    S = sum_u clip(sum_{i in u} g_i, C) + N(0, (sigma * C)^2 I),   clip(g, C) = g * min(1, C / (|g| + 1e-6))

with |.| the L2 norm over *all* parameters together (flat clipping, as Opacus does). One unit changes S by at
most C, so S is a Gaussian mechanism with sensitivity C and noise multiplier sigma. The D update divides S by the
expected batch size and adds the (non-private) gradient of the fake-image term.

The `clip` and `noise` switches exist for ablations only; with either off the result is not private.
"""

from __future__ import annotations

import dataclasses

import torch

from spine.dp.secure_random import secure_normal

PerSampleGrads = dict[str, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class MechanismConfig:
    """max_grad_norm C, noise_multiplier sigma; clip/noise False only for (non-private) ablations."""

    max_grad_norm: float
    noise_multiplier: float
    clip: bool = True
    noise: bool = True
    secure_rng: bool = False  # noise from os.urandom (spine.dp.secure_random) instead of the torch RNG

    def __post_init__(self) -> None:
        if not self.max_grad_norm > 0:
            raise ValueError(f"--dp-max-grad-norm must be positive, got {self.max_grad_norm}")
        if not self.noise_multiplier >= 0:
            raise ValueError(f"--dp-noise-multiplier must be non-negative, got {self.noise_multiplier}")

    @property
    def noise_std(self) -> float:
        """Standard deviation of the noise added to the summed clipped gradient."""
        return self.noise_multiplier * self.max_grad_norm if self.noise else 0.0

    @property
    def is_private(self) -> bool:
        return self.clip and self.noise and self.noise_multiplier > 0


def sum_per_unit(grads: PerSampleGrads, unit_index: torch.Tensor, num_units: int) -> PerSampleGrads:
    """Rows summed per privacy unit: unit_index [N] in [0, num_units) -> {name: [num_units, ...]}."""
    return {name: g.new_zeros([num_units, *g.shape[1:]]).index_add_(0, unit_index, g) for name, g in grads.items()}


def per_row_norms(grads: PerSampleGrads) -> torch.Tensor:
    """L2 norm of each row over all parameters together: [N]."""
    squares = [g.flatten(1).square().sum(1) for g in grads.values()]
    return torch.stack(squares).sum(0).sqrt()


def sanitize_rows_(grads: PerSampleGrads) -> None:
    """NaN -> 0, +-inf -> +-1e5 per row, so one bad sample cannot defeat clipping (its row stays bounded)."""
    for g in grads.values():
        torch.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5, out=g)


def clip_rows(grads: PerSampleGrads, max_norm: float) -> tuple[PerSampleGrads, torch.Tensor]:
    """Scale each row to norm <= max_norm; returns (clipped rows, original norms [N])."""
    norms = per_row_norms(grads)
    factor = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    clipped = {name: g * factor.view(-1, *[1] * (g.ndim - 1)).to(g.dtype) for name, g in grads.items()}
    return clipped, norms


def gaussian_noise_like(
    reference: dict[str, torch.Tensor], std: float, secure: bool = False
) -> dict[str, torch.Tensor]:
    """Independent N(0, std^2) per coordinate, shaped like each entry of `reference`: from the global torch RNG,
    or with `secure` from the operating system's CSPRNG."""
    if secure:
        return {name: secure_normal(t.shape, t.dtype, t.device) * std for name, t in reference.items()}
    return {name: torch.randn_like(t) * std for name, t in reference.items()}


def clipped_sum(
    grads: PerSampleGrads, unit_index: torch.Tensor, num_units: int, config: MechanismConfig
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """sum_u clip(sum_{i in u} g_i, C) as {name: param-shaped tensor}, plus the per-unit norms before clipping.

    A batch may be processed in chunks and the sums added, as long as no unit is split across chunks.
    """
    grads = sum_per_unit(grads, unit_index, num_units)
    sanitize_rows_(grads)
    if config.clip:
        grads, norms = clip_rows(grads, config.max_grad_norm)
    else:
        norms = per_row_norms(grads)
    return {name: g.sum(0) for name, g in grads.items()}, norms


def unit_chunks(units: torch.Tensor, max_rows: int) -> list[slice]:
    """Consecutive slices of a batch, each of at most `max_rows` images and whole units (`units` [N]: each image's
    unit, numbered in order); a unit larger than `max_rows` gets a slice of its own. The physical micro-batches
    of a virtual step: per-sample gradients are held for one slice at a time, so memory is bounded by
    `max_rows` whatever the Poisson draw's size."""
    if max_rows < 1:
        raise ValueError(f"--dp-physical-batch must be >= 1, got {max_rows}")
    n = int(units.shape[0])
    starts = torch.nonzero(torch.diff(units, prepend=units[:1] - 1)).flatten().tolist() + [n]
    chunks, begin = [], 0
    for unit_start, unit_end in zip(starts[:-1], starts[1:]):
        if unit_end - begin > max_rows and unit_start > begin:
            chunks.append(slice(begin, unit_start))
            begin = unit_start
    if begin < n:
        chunks.append(slice(begin, n))
    return chunks


def add_noise(total: dict[str, torch.Tensor], config: MechanismConfig) -> dict[str, torch.Tensor]:
    """total + N(0, (sigma C)^2) per coordinate, once per step (also for an empty Poisson batch)."""
    if config.noise_std == 0:
        return dict(total)
    noise = gaussian_noise_like(total, config.noise_std, config.secure_rng)
    return {name: t + noise[name] for name, t in total.items()}
