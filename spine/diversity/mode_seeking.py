"""Mode seeking: two latents rendered under one label should give two different images.

A conditional GAN whose discriminator gives a weak or noisy signal (under DP-SGD most of D's gradient is noise, and
DP's D has no minibatch-std layer to see a batch's spread: `spine.dp.guards`) tends to map every latent of a class
to the same image (docs/RESULTS.md P and R: one image per class). Mao et al., "Mode Seeking Generative Adversarial
Networks for Diverse Image Synthesis" (CVPR 2019), add to G's loss the inverse of the ratio

    ratio = mean_pixels |G(z1, c) - G(z2, c)| / mean_dims |z1 - z2|

for two fresh latents under one label, so that moving in the latent space must move the image. This term renders
its own pairs (fresh z1, z2, a label c uniform over the classes, constant noise inputs, the tracked average w left
alone) and charges

    loss = weight / (ratio + EPS)

per pair, spread over the batch as `spine.clinical.locality` does. It reads only the generator, never an image of
the training set, so under DP it costs no privacy. ``pairs_fraction`` of the batch is rendered twice per call.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from training.loss import pair_count, spread_pairs
from training.plugins import Plugin

EPS = 1e-5  # Mao et al.'s constant: bounds the term when two renderings coincide


class ModeSeeking(Plugin):
    """Generator term (see training.loss): weight / (image distance / latent distance + EPS) per pair."""

    name = "mode_seeking"

    def __init__(self, weight: float, pairs_fraction: float = 0.25):
        if not weight > 0:
            raise ValueError(f"mode seeking: expected a positive weight, got {weight}")
        if not 0 < pairs_fraction <= 1:
            raise ValueError(f"mode seeking: pairs_fraction must be in (0, 1], got {pairs_fraction}")
        self.weight = float(weight)
        self.pairs_fraction = float(pairs_fraction)
        self.G: torch.nn.Module | None = None

    def attach(self, G: torch.nn.Module) -> None:
        """The generator whose renderings are compared (the one being trained, not its EMA copy)."""
        self.G = G

    def __call__(self, gen_img: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        if self.G is None:
            raise RuntimeError("mode seeking: attach(G) was not called; the term needs the generator")
        batch = gen_img.shape[0]
        ratio = self.pair_ratios(pair_count(batch, self.pairs_fraction), gen_img.device)
        return spread_pairs(self.weight / (ratio + EPS), batch)

    def pair_ratios(self, pairs: int, device: torch.device) -> torch.Tensor:
        """Image distance over latent distance per pair [pairs] (mean absolute differences); z ~ N(0, I) and c
        uniform, drawn from torch's global generator, which the training loop seeds and checkpoints."""
        G = self.G
        z = torch.randn([2 * pairs, G.z_dim], device=device)
        labels = torch.zeros([2 * pairs, G.c_dim], device=device)
        if G.c_dim > 0:  # one label per pair, shared by its two latents
            c = torch.randint(G.c_dim, [pairs], device=device)
            labels = F.one_hot(torch.cat([c, c]), G.c_dim).float()
        images = G.synthesis(G.mapping(z, labels, skip_w_avg_update=True), pose_z=z, noise_mode="const")
        image_gap = (images[:pairs] - images[pairs:]).abs().flatten(1).mean(1)
        latent_gap = (z[:pairs] - z[pairs:]).abs().mean(1)
        return image_gap / latent_gap

    def snapshot_metadata(self) -> dict[str, Any]:
        return dict(mode_seeking=dict(weight=self.weight, pairs_fraction=self.pairs_fraction))
