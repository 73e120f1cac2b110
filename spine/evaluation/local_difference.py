"""Abnormal images that differ from normal ones only where lesions are: a synthesis option.

A conditional generator changes the whole image with its label (docs/RESULTS.md F1: the label's effect is spread over
every style layer, and the generated class difference is several times the real one's), so a classifier trained on
its images can learn the image-wide part, which real images do not have. The lesion evidence sits in the strongest,
local part of the difference between one latent rendered as normal and as abnormal (F1 row 4). With a `fraction`,
each image of another class is its latent's *normal* rendering plus only the strongest `fraction` of the pixels of
that difference (a softened mask, so that no seam is drawn); normal images are drawn as they are. Every image still
comes from the generator alone: the option changes how its two renderings are combined, no real pixel enters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORMAL = 0  # the reference class: abnormality generators (docs/CONTRACTS.md) put "normal" first


def strongest_part_mask(difference: torch.Tensor, fraction: float, radius: int = 1) -> torch.Tensor:
    """[N, 1, H, W] mask in [0, 1]: 1 on the `fraction` of pixels where |difference| (channels averaged, then box-
    blurred over a (2 radius + 1) square so that a lesion counts as a region, not as single pixels) is largest,
    softened by a 3x3 box so that the pasted region has no hard edge. fraction >= 1 keeps everything."""
    if not 0 < fraction:
        raise ValueError(f"fraction must be positive, got {fraction}")
    n = difference.shape[0]
    if fraction >= 1:
        return torch.ones([n, 1, *difference.shape[2:]], dtype=difference.dtype, device=difference.device)
    strength = difference.abs().mean(dim=1, keepdim=True)
    if radius > 0:
        strength = F.avg_pool2d(strength, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    threshold = torch.quantile(strength.flatten(1).float(), 1 - fraction, dim=1).view(n, 1, 1, 1)
    mask = (strength >= threshold.to(strength.dtype)).to(difference.dtype)
    return F.avg_pool2d(mask, 3, stride=1, padding=1, count_include_pad=False)


def local_difference(normal: torch.Tensor, other: torch.Tensor, fraction: float) -> torch.Tensor:
    """The normal rendering plus the strongest `fraction` of (other - normal); both [N, C, H, W] of the same latents."""
    if normal.shape != other.shape:
        raise ValueError(f"renderings of different shapes: {list(normal.shape)} and {list(other.shape)}")
    difference = other - normal
    return normal + strongest_part_mask(difference, fraction) * difference


class LocalDifferenceGenerator(torch.nn.Module):
    """Wraps a conditional G: images labelled normal are G's own; any other label gets `local_difference` between
    the latent's normal rendering and its rendering under that label, both with the same noise inputs (random ones
    too: the label's effect, not the noise, makes the difference). Same call signature and attributes as G."""

    def __init__(self, G: torch.nn.Module, fraction: float) -> None:
        super().__init__()
        if G.c_dim < 2:
            raise ValueError(f"a local class difference needs a conditional generator with >= 2 classes, got {G.c_dim}")
        self.G, self.fraction = G, fraction
        self.z_dim, self.c_dim = G.z_dim, G.c_dim
        self.img_resolution, self.img_channels = G.img_resolution, G.img_channels

    def forward(self, z: torch.Tensor, c: torch.Tensor, **synthesis_kwargs) -> torch.Tensor:
        as_normal = torch.zeros_like(c)
        as_normal[:, NORMAL] = 1
        devices = [z.device] if z.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the other rendering then draws the same random noise inputs
            normal = self.G(z, as_normal, **synthesis_kwargs)
        is_normal = c.argmax(dim=1) == NORMAL
        if bool(is_normal.all()):
            return normal
        local = local_difference(normal, self.G(z, c, **synthesis_kwargs), self.fraction)
        return torch.where(is_normal.view(-1, 1, 1, 1), normal, local)
