"""Class locality: one latent rendered under two labels should differ only where a finding is.

A real abnormal radiograph is a spine like any other plus findings that occupy a small part of it. The conditional
generators of docs/RESULTS.md E3 instead encode the label as a change of the whole image (texture of the whole
column, darkening, bands): the same latent rendered as normal and as abnormal differs by about 29 grey levels on
average over every pixel. A classifier trained on such images learns that global code, which real images do not
carry.

This generator term renders fresh latents z under their label c and under another label c' (for the binary task,
normal and abnormal), with constant noise inputs (and without moving the tracked average w), and charges the mean
absolute difference of the two images:

    loss = weight * mean_pixels |G(z, c) - G(z, c')|

An L1 penalty is cheapest for differences that are confined to a few pixels, so the label is pushed into local
changes, where lesions are. With ``power`` p < 1 each pixel is charged (|d| + eps)^p - eps^p instead: a concave
charge, closer to counting the pixels that change, so that a faint change spread over the whole image (which L1
lets through at low amplitude) costs more than a strong one in a few pixels. With ``relative`` each pair's charge is
divided by its contrast (the two images' mean absolute deviation from their own means): the plain charge also falls
when every image loses contrast, the way out that the failed runs of the DP public-data recipe took (docs/RESULTS.md
T: their images faded to grey while D still told them from real ones); relative, fading costs the term nothing.
The term renders its own pairs, so it needs the generator (`attach`, called by training.loss.StyleGAN2Loss);
``pairs_fraction`` of the batch size is rendered twice per call (a quarter: about a fifth more generator work per
iteration).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from training.loss import pair_count, spread_pairs
from training.plugins import Plugin

EPS = 0.01  # with power < 1: the smallest pixel difference (in [-1, 1] units, about a grey level) whose slope is capped
MIN_CONTRAST = 0.01  # relative: a floor under the divisor, so that a flat pair costs its difference / 0.01, finite


class ClassLocality(Plugin):
    """Generator term (see training.loss): the paired L1 of the module docstring, spread over the batch."""

    name = "class_locality"

    def __init__(self, weight: float, pairs_fraction: float = 0.25, power: float = 1.0, relative: bool = False):
        if not weight > 0:
            raise ValueError(f"class locality: expected a positive weight, got {weight}")
        if not 0 < power <= 1:
            raise ValueError(f"class locality: power must be in (0, 1], got {power}")
        self.power = float(power)
        self.relative = bool(relative)
        if not 0 < pairs_fraction <= 1:
            raise ValueError(f"class locality: pairs_fraction must be in (0, 1], got {pairs_fraction}")
        self.weight = float(weight)
        self.pairs_fraction = float(pairs_fraction)
        self.G: torch.nn.Module | None = None

    def attach(self, G: torch.nn.Module) -> None:
        """The generator whose renderings are compared (the one being trained, not its EMA copy)."""
        if getattr(G, "c_dim", 0) < 2:
            raise ValueError(
                f"class locality needs a conditional generator with at least 2 classes, "
                f"got c_dim={getattr(G, 'c_dim', 0)}"
            )
        self.G = G

    def __call__(self, gen_img: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        if self.G is None:
            raise RuntimeError("class locality: attach(G) was not called; the term needs the generator")
        batch = gen_img.shape[0]
        gap = self.pair_differences(pair_count(batch, self.pairs_fraction), gen_img.device)
        return self.weight * spread_pairs(gap, batch)

    def pair_differences(self, pairs: int, device: torch.device) -> torch.Tensor:
        """Mean penalty of |G(z, c) - G(z, c')| per pair [pairs]: z ~ N(0, I), c uniform, c' uniform among the others
        (drawn from torch's global generator, which the training loop seeds and checkpoints)."""
        G = self.G
        z = torch.randn([pairs, G.z_dim], device=device)
        c = torch.randint(G.c_dim, [pairs], device=device)
        other = (c + torch.randint(1, G.c_dim, [pairs], device=device)) % G.c_dim
        z = torch.cat([z, z])
        ws = G.mapping(z, F.one_hot(torch.cat([c, other]), G.c_dim).float(), skip_w_avg_update=True)
        images = G.synthesis(ws, pose_z=z, noise_mode="const")
        gap = (images[:pairs] - images[pairs:]).abs().flatten(1)
        charge = gap if self.power == 1 else (gap + EPS) ** self.power - EPS**self.power
        if not self.relative:
            return charge.mean(1)
        return charge.mean(1) / pair_contrast(images, pairs).clamp(min=MIN_CONTRAST)

    def snapshot_metadata(self) -> dict[str, Any]:
        return dict(
            class_locality=dict(
                weight=self.weight, pairs_fraction=self.pairs_fraction, power=self.power, relative=self.relative
            )
        )


def pair_contrast(images: torch.Tensor, pairs: int) -> torch.Tensor:
    """Mean absolute deviation of each image from its own mean, averaged over pair i's two images [pairs]
    (images: the first renderings of every pair, then the second ones)."""
    flat = images.flatten(1)
    deviation = (flat - flat.mean(1, keepdim=True)).abs().mean(1)
    return (deviation[:pairs] + deviation[pairs:]) / 2
