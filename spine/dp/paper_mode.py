"""The authors' scheme (--dp-mode=paper), kept for the ablation: NOT differentially private.

As in the authors' SpineGAN code: microbatch 1, then for every phase of G *and* D the whole-batch
gradient gets Gaussian noise of std sigma (authors: 0.02) on every coordinate, and *then* the total gradient norm is
clipped to C (authors: 1.5). Noise before clipping and clipping of the batch gradient (not of each record's
gradient) bound no record's influence, so no epsilon follows from it; runs are labelled NOT-DP. The authors'
nominal accounting treated sigma / C as a noise multiplier with q = 1/N; we report no epsilon for it.
Here the noise std is --dp-noise-multiplier x --dp-max-grad-norm (paper defaults: 0.02/1.5 and 1.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.phase_update import GradientStep

PAPER_NOISE_STD = 0.02
PAPER_MAX_GRAD_NORM = 1.5


class NoiseThenClipStep(GradientStep):
    """The standard batch-mean step with, before the optimiser step, noise (std) then global norm clipping (C)."""

    def __init__(self, noise_std: float, max_grad_norm: float, noise: bool = True, clip: bool = True):
        if noise_std < 0 or max_grad_norm <= 0:
            raise ValueError(
                f"paper mode: noise std must be >= 0 and max grad norm > 0, got {noise_std}, {max_grad_norm}"
            )
        self.noise_std = float(noise_std) if noise else 0.0
        self.max_grad_norm = float(max_grad_norm)
        self.clip = bool(clip)

    def transform_gradients_(self, params: Sequence[torch.nn.Parameter]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if self.noise_std > 0:
            for g in grads:
                g.add_(torch.randn_like(g) * self.noise_std)
        if self.clip and grads:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.max_grad_norm)

    def report_tick(self) -> str:
        return "NOT-DP(paper scheme)"
