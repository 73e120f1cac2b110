"""StyleGAN2 loss: non-saturating logistic loss, R1 and path-length regularisation, style mixing.

Phases (the training loop picks them; lazy regularisation runs the *reg* phases every few iterations):
    Gmain  softplus(-D(aug(G(z, c)))) plus every generator term (e.g. the clinical loss).
    Greg   path-length penalty on N // pl_batch_shrink samples.
    Gboth  Gmain and Greg together (no lazy regularisation).
    Dmain  softplus(D(aug(fake))) + softplus(-D(aug(real))).
    Dreg   R1 = |d sum D(aug(real)) / d real|^2 * gamma / 2, taken w.r.t. the *un-augmented* reals.
    Dboth  Dmain and Dreg together.

Generator terms: any object with `name: str` and `__call__(gen_img, gen_c) -> Tensor[N]` (a per-sample loss,
already weighted). Gmain adds its mean and reports it as `Loss/G/<name>`; the adversarial part stays `Loss/G/loss`.
A term that renders images of its own defines `attach(G)`, called here with the generator being trained.

With `adversarial_class` k, D judges the renders G(z, one-hot k) only, in its fake term and in G's adversarial
term, while the generator terms see G(z, c): for a D whose real images show class k alone (DP's declared-public
normal images beside a private critic that judges every class, `spine.dp.private_critic`).

Per-sample losses are exposed (`generator_main_loss`, `path_length_loss`, `discriminator_fake_loss`,
`discriminator_real_loss`) so that an update rule which needs per-sample gradients (DP-SGD, see
`training.phase_update`) can use them; `accumulate_gradients` is the plain sum-and-backward of the same terms.
The real-image term itself is two plain functions of D's output, `real_logit_loss` and `r1_penalty`, which an
update rule that differentiates per sample with `torch.func` (DP-SGD) calls as they are.
`ada_controller` (optional) receives the logits of every real batch, for the ADA heuristic r_t.
Gradients of each phase reach only that phase's network because the loop toggles `requires_grad`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")


class GeneratorTerm(Protocol):
    """An extra generator loss added to Gmain (e.g. `spine.clinical.loss.ClinicalLoss`); as a training plug-in it
    derives from `training.plugins.Plugin`."""

    name: str

    def __call__(self, gen_img: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        """Per-sample loss [N] for images in [-1, 1] (NCHW) and their labels [N, c_dim]."""
        ...


def spread_pairs(per_pair_loss: torch.Tensor, batch: int) -> torch.Tensor:
    """A generator term that renders its own pairs gives the loss of pair i % pairs to sample i [batch]."""
    return per_pair_loss[torch.arange(batch, device=per_pair_loss.device) % per_pair_loss.shape[0]]


def pair_count(batch: int, pairs_fraction: float) -> int:
    """How many pairs such a term renders for a batch: `pairs_fraction` of it, at least one."""
    return max(1, round(batch * pairs_fraction))


def class_indices(gen_c: torch.Tensor, batch: int, num_classes: int, term: str) -> torch.Tensor:
    """The class index [N] of each one-hot conditioning label [N, num_classes]; ValueError naming `term` otherwise."""
    if gen_c.ndim != 2 or gen_c.shape != (batch, num_classes):
        raise ValueError(
            f"{term}: conditioning labels of shape {tuple(gen_c.shape)}; expected [{batch}, {num_classes}] "
            "one-hot labels"
        )
    return gen_c.argmax(dim=1)


def leave_one_out_match(deviation: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per sample [N]: mean over dimensions of (the other same-class samples' mean deviation, detached) times the
    sample's own deviation [N, D] from its class's target; 0 for a sample alone in its class. Its gradient is an
    unbiased estimate of that of |mean class deviation|^2 / D (spine.clinical.feature_match's docstring)."""
    onehot = torch.nn.functional.one_hot(classes, num_classes).to(deviation.dtype)
    class_sums = onehot.T @ deviation.detach()  # [C, D]
    others = (onehot.sum(0)[classes] - 1).unsqueeze(1)  # same-class images besides i
    leave_one_out = (class_sums[classes] - deviation.detach()) / others.clamp(min=1)
    return (leave_one_out * deviation).mean(1) * (others[:, 0] > 0)


def real_logit_loss(real_logits: torch.Tensor) -> torch.Tensor:
    """D's loss on real images from its logits: softplus(-D(x)), elementwise."""
    return F.softplus(-real_logits)


def r1_penalty(input_grads: torch.Tensor) -> torch.Tensor:
    """The R1 penalty |dD/dx|^2 per sample [N] from the gradients of D's logits w.r.t. its input [N, C, H, W]."""
    return input_grads.square().sum([1, 2, 3])


class StyleGAN2Loss:
    """The official StyleGAN2-ADA objective with pluggable generator terms."""

    def __init__(
        self,
        device: torch.device,
        G: torch.nn.Module,
        D: torch.nn.Module,
        augment_pipe: torch.nn.Module | None = None,
        r1_gamma: float = 10,
        style_mixing_prob: float = 0.9,
        pl_weight: float = 2,
        pl_batch_shrink: int = 2,
        pl_decay: float = 0.01,
        generator_terms: Sequence[GeneratorTerm] = (),
        ada_controller: Any | None = None,
        adversarial_class: int | None = None,
    ):
        for term in generator_terms:
            if not isinstance(getattr(term, "name", None), str) or not callable(term):
                raise TypeError(f"generator term {term!r} needs a str `name` and __call__(gen_img, gen_c)")
        self.device = torch.device(device)
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.pl_decay = float(pl_decay)
        self.generator_terms = list(generator_terms)
        for term in self.generator_terms:
            if hasattr(term, "attach"):
                term.attach(G)
        self.ada_controller = ada_controller  # training.augment.AdaController: sees every D(aug(real)) score
        self.adversarial_class = adversarial_class
        self.pl_mean = torch.zeros([], device=self.device)
        # Style mixing decided on the device (training.graph_capture sets it): same distribution, no host draws.
        self.style_mixing_on_device = False

    # ---- network evaluation -------------------------------------------------------------------------------------
    def run_G(self, z: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate images and return (img, ws); style mixing swaps the tail of ws for a second latent's."""
        ws = self.G.mapping(z, c)
        if self.style_mixing_prob > 0:
            ws = self._mix_styles_on_device(ws, z, c) if self.style_mixing_on_device else self._mix_styles(ws, z, c)
        img = self.G.synthesis(ws, pose_z=z)
        return img, ws

    def _mix_styles(self, ws: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The cutoff is drawn on the host, and the second mapping runs only when it mixes."""
        num_ws = ws.shape[1]
        cutoff = int(torch.empty([], dtype=torch.int64).random_(1, num_ws))
        if float(torch.rand([])) >= self.style_mixing_prob:
            cutoff = num_ws
        if cutoff < num_ws:
            mixed = self.G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
            ws = torch.cat([ws[:, :cutoff], mixed[:, cutoff:]], dim=1)
        return ws

    def _mix_styles_on_device(self, ws: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The same distribution with every draw on the device and the second mapping always run, selected by a
        mask (no host decision: what a CUDA graph needs). On the CPU it consumes the generator as `_mix_styles`
        does whenever that one mixes."""
        num_ws = ws.shape[1]
        cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
        cutoff = torch.where(torch.rand([], device=ws.device) < self.style_mixing_prob, cutoff, num_ws)
        mixed = self.G.mapping(torch.randn_like(z), c, skip_w_avg_update=True)
        keep = torch.arange(num_ws, device=ws.device).reshape(1, num_ws, 1) < cutoff
        return torch.where(keep, ws, mixed)

    def run_D(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Discriminator logits [N, 1]; every D input goes through the augmentation when there is one."""
        return self.D(self.augment(img), c)

    def augment(self, img: torch.Tensor) -> torch.Tensor:
        """The images as D sees them: through the augment pipe when there is one."""
        return img if self.augment_pipe is None else self.augment_pipe(img)

    def adversarial_labels(self, gen_c: torch.Tensor) -> torch.Tensor:
        """The labels of the renders D judges: `gen_c`, or one-hot `adversarial_class` when set."""
        if self.adversarial_class is None:
            return gen_c
        return F.one_hot(torch.full_like(gen_c[:, 0], self.adversarial_class, dtype=torch.int64), gen_c.shape[1]).to(
            gen_c.dtype
        )

    # ---- per-sample losses --------------------------------------------------------------------------------------
    def generator_main_loss(self, gen_z: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        """Adversarial loss plus generator terms, per sample [N]."""
        gen_img, _ = self.run_G(gen_z, gen_c)
        judged_c = self.adversarial_labels(gen_c)
        judged_img = gen_img if judged_c is gen_c else self.run_G(gen_z, judged_c)[0]
        gen_logits = self.run_D(judged_img, judged_c)
        training_stats.report("Loss/scores/fake", gen_logits)
        training_stats.report("Loss/signs/fake", gen_logits.sign())
        loss = F.softplus(-gen_logits).flatten()
        training_stats.report("Loss/G/loss", loss)
        for term in self.generator_terms:
            term_loss = term(gen_img, gen_c)
            if term_loss.shape != loss.shape:
                raise ValueError(
                    f"generator term {term.name!r} returned shape {tuple(term_loss.shape)}, "
                    f"expected a per-sample loss of shape {tuple(loss.shape)}"
                )
            training_stats.report(f"Loss/G/{term.name}", term_loss)
            loss = loss + term_loss
        return loss

    def path_length_loss(self, gen_z: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        """Weighted path-length penalty on the first N // pl_batch_shrink samples; updates the pl_mean EMA."""
        batch = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch], gen_c[:batch])
        pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
        with conv2d_gradfix.no_weight_gradients():
            pl_grads = torch.autograd.grad(
                outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws], create_graph=True, only_inputs=True
            )[0]
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        training_stats.report("Loss/pl_penalty", pl_penalty)
        loss = pl_penalty * self.pl_weight
        training_stats.report("Loss/G/reg", loss)
        # The zero-weighted image term keeps every synthesis parameter in the graph (uniform gradient layout).
        return gen_img[:, 0, 0, 0] * 0 + loss

    def discriminator_fake_loss(self, gen_z: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        """softplus(D(aug(G(z, c)))) per sample [N] (c: `adversarial_labels`); G runs without a graph."""
        gen_c = self.adversarial_labels(gen_c)
        with torch.no_grad():
            gen_img, _ = self.run_G(gen_z, gen_c)
        gen_logits = self.run_D(gen_img, gen_c)
        training_stats.report("Loss/scores/fake", gen_logits)
        training_stats.report("Loss/signs/fake", gen_logits.sign())
        return F.softplus(gen_logits).flatten()

    def discriminator_real_loss(
        self, real_img: torch.Tensor, real_c: torch.Tensor, main: bool, r1: bool, fake_loss: torch.Tensor | None = None
    ) -> torch.Tensor:
        """softplus(-D(aug(real))) (if main) plus the weighted R1 penalty (if r1), per sample [N].

        `fake_loss` (from the same round) only completes the `Loss/D/loss` statistic.
        """
        real_img_tmp = real_img.detach().requires_grad_(r1)
        real_logits = self.run_D(real_img_tmp, real_c)
        training_stats.report("Loss/scores/real", real_logits)
        training_stats.report("Loss/signs/real", real_logits.sign())
        if self.ada_controller is not None:
            self.ada_controller.accumulate(real_logits)
        loss = real_logits.flatten() * 0
        if main:
            loss_real = real_logit_loss(real_logits).flatten()
            training_stats.report("Loss/D/loss", loss_real if fake_loss is None else loss_real + fake_loss.detach())
            loss = loss + loss_real
        if r1:
            with conv2d_gradfix.no_weight_gradients():
                r1_grads = torch.autograd.grad(
                    outputs=[real_logits.sum()], inputs=[real_img_tmp], create_graph=True, only_inputs=True
                )[0]
            penalty = r1_penalty(r1_grads)
            loss_r1 = penalty * (self.r1_gamma / 2)
            training_stats.report("Loss/r1_penalty", penalty)
            training_stats.report("Loss/D/reg", loss_r1)
            loss = loss + loss_r1
        return loss

    # ---- phase entry point --------------------------------------------------------------------------------------
    def accumulate_gradients(
        self,
        phase: str,
        real_img: torch.Tensor,
        real_c: torch.Tensor,
        gen_z: torch.Tensor,
        gen_c: torch.Tensor,
        gain: float,
    ) -> None:
        """Add the gradients of `phase`'s loss (batch mean times `gain`) to the trainable parameters."""
        if phase not in PHASES:
            raise ValueError(f"unknown loss phase {phase!r}; expected one of {PHASES}")
        do_Gmain = phase in ("Gmain", "Gboth")
        do_Gpl = phase in ("Greg", "Gboth") and self.pl_weight != 0
        do_Dmain = phase in ("Dmain", "Dboth")
        do_Dr1 = phase in ("Dreg", "Dboth") and self.r1_gamma != 0
        if do_Gmain:
            self.generator_main_loss(gen_z, gen_c).mean().mul(gain).backward()
        if do_Gpl:
            self.path_length_loss(gen_z, gen_c).mean().mul(gain).backward()
        fake_loss = None
        if do_Dmain:
            fake_loss = self.discriminator_fake_loss(gen_z, gen_c)
            fake_loss.mean().mul(gain).backward()
        if do_Dmain or do_Dr1:
            real_loss = self.discriminator_real_loss(real_img, real_c, main=do_Dmain, r1=do_Dr1, fake_loss=fake_loss)
            real_loss.mean().mul(gain).backward()
