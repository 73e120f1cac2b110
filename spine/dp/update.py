"""DP-SGD discriminator update: the `training.phase_update.PhaseUpdate` of the D phase in --dp-mode=dpsgd.

One D step (phase Dboth; R1 is folded in, see below):
  1. Refuse the step if it would take epsilon past the budget (`spine.dp.ledger.BudgetStop` then stops the run).
  2. The real batch is Poisson-sampled (images or studies, rate q) by DP's `real_sampling` plug-in
     (`spine.dp.sampling.PoissonSampling`), since the accountant's subsampling analysis assumes Poisson sampling;
     the rounds keep each unit whole and number the units (`PhaseRound.real_units`).
  3. Per-sample gradients of the real term softplus(-D(x_i)), plus every `r1_interval`-th step the R1 penalty
     r1_interval * gamma/2 |dD/dx_i|^2 inside the same per-sample loss (`spine.dp.per_sample`); summed per unit,
     clipped to C, summed, N(0, (sigma C)^2) added; divided by the expected batch size q * N_images. A virtual
     step: the per-sample gradients are computed in physical micro-batches of at most `physical_batch` images
     (whole units; `mechanism.unit_chunks`) whose clipped sums are added, so memory stays bounded with a large
     expected batch; the noise is drawn once for the whole logical batch.
     With `private_scope` other than 'all' (train.py --dp-private-params, which needs public images), only part of
     D (`PRIVATE_SCOPES`: its last layers, or its output layer with its first blocks) takes the private term: the
     per-sample gradients, clipping and noise cover those parameters alone, and the rest of D learns from the fakes
     and the public images, which read no private record.
     Fewer noised coordinates: DP-SGD's noise norm grows with the square root of their number (326k weights in the
     demo's D at 32x32, 41k in its output layer and label embedding), and noise over every weight of D collapsed
     the generator (docs/RESULTS.md R and V).
  4. Plus the ordinary batch-mean gradient of the fake term softplus(D(G(z, c))): it depends on no real record.
  5. With declared-public real images (`spine.dp.public_reals`, train.py --dp-public-reals), plus the ordinary
     batch-mean gradient of their real term (and R1 on the same steps), times `public_weight`: no private record.
     With `private_weight` w < 1 (train.py --dp-private-weight, which needs public images) the private term, noise
     included, enters D's gradient times w. A post-processing of the noised sum: the account is unchanged. Why:
     Adam normalises each coordinate by its gradient's running RMS, and at epsilon 10 the noise per coordinate is
     about 40 times the clean terms' RMS (docs/RESULTS.md W), so at w = 1 every weight of D takes a full random
     step per iteration; a small w keeps D's dynamics those of the clean terms, while the private signal, which is
     the same in every step, still adds up over the steps.
     With a private critic (train.py --dp-private-critic, which needs public images; `spine.dp.private_critic`),
     the private term trains the critic D_p instead of D: D's step holds the fakes and the public images alone,
     and D_p takes its own step on its fake term (the batch mean of softplus(D_p(G(z, c), c)), no private record)
     plus the private term of steps 2-3 computed on D_p.
  6. One optimiser step; one step recorded in the privacy account.
G, G_ema and the path-length term only read D's parameters: post-processing, no further privacy cost.
Real-data statistics (D's real scores, R1 values, per-sample norms) are not reported: the logs are outputs too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from spine.dp import mechanism, per_sample
from spine.dp.accounting import PrivacyAccount
from spine.dp.private_critic import PrivateCriticTerm
from spine.dp.public_reals import PublicReals
from torch_utils import training_stats
from training.loss import StyleGAN2Loss, r1_penalty, real_logit_loss
from training.phase_update import Phase, PhaseRound, sanitize_gradients_
from training.plugins import Plugin

# Which of D's parameters the private term trains: name prefixes (b4 is the epilogue, at 4x4 in every StyleGAN2 D;
# `mapping` embeds the label of a conditional D) and how many of D's blocks from its input (the highest resolutions,
# where a local finding such as a lesion is seen: b32 and b16 at 32x32), or None for every parameter.
HEAD = ("b4.out.", "mapping.")
PRIVATE_SCOPES: dict[str, tuple[tuple[str, ...], int] | None] = {
    "all": None,
    "epilogue": (("b4.", "mapping."), 0),
    "head": (HEAD, 0),
    "input1-head": (HEAD, 1),
    "input2-head": (HEAD, 2),
}


def private_parameter_names(D: torch.nn.Module, scope: str) -> frozenset[str] | None:
    """The names of D's trainable parameters in `scope` (a key of PRIVATE_SCOPES); None for all of them."""
    if scope not in PRIVATE_SCOPES:
        raise ValueError(f"--dp-private-params={scope!r}: expected one of {list(PRIVATE_SCOPES)}")
    if PRIVATE_SCOPES[scope] is None:
        return None
    prefixes, input_blocks = PRIVATE_SCOPES[scope]
    prefixes += tuple(f"b{res}." for res in getattr(D, "block_resolutions", [])[:input_blocks])
    names = frozenset(name for name, _ in D.named_parameters() if name.startswith(prefixes))
    if not names:
        raise ValueError(f"--dp-private-params={scope}: D has no parameter named {' or '.join(prefixes)}*")
    return names


class DPDiscriminatorUpdate(Plugin):
    """The private D update rule. It records its steps in `account` (shared with `spine.dp.ledger`'s plug-ins,
    which checkpoint, report and stop on it) and divides the private sum by `expected_batch_size` (that of the
    run's `PoissonSampling`). `public`: declared-public real images whose term is added at `public_weight`;
    `private_scope`: which parameters the private term trains (a key of PRIVATE_SCOPES); `private_weight`: the
    factor on the private term, its signal and noise alike (with `public` only); `critic`: the private critic that
    takes the private term instead of D (with `public` only)."""

    def __init__(
        self,
        account: PrivacyAccount,
        config: mechanism.MechanismConfig,
        expected_batch_size: float,
        r1_gamma: float,
        r1_interval: int | None,
        physical_batch: int | None = None,
        public: PublicReals | None = None,
        public_weight: float = 1.0,
        private_scope: str = "all",
        private_weight: float = 1.0,
        critic: PrivateCriticTerm | None = None,
    ):
        if r1_interval is not None and r1_interval < 1:
            raise ValueError(f"r1_interval must be >= 1 or None, got {r1_interval}")
        if not expected_batch_size > 0:
            raise ValueError(f"expected_batch_size must be positive, got {expected_batch_size}")
        self.account = account
        self.config = config
        self.expected_batch_size = float(expected_batch_size)
        self.r1_gamma = float(r1_gamma)
        self.r1_interval = r1_interval
        self.physical_batch = physical_batch
        self.public = public
        self.public_weight = float(public_weight)
        if private_scope not in PRIVATE_SCOPES:
            raise ValueError(f"--dp-private-params={private_scope!r}: expected one of {list(PRIVATE_SCOPES)}")
        if private_scope != "all" and public is None:
            raise ValueError(
                f"--dp-private-params={private_scope} needs public images: D's other layers learn from them"
            )
        self.private_scope = private_scope
        if not private_weight > 0:
            raise ValueError(f"--dp-private-weight={private_weight}: expected a positive weight")
        if private_weight != 1.0 and public is None:
            raise ValueError(
                f"--dp-private-weight={private_weight} needs public images: they give D its clean real term"
            )
        self.private_weight = float(private_weight)
        if critic is not None and public is None:
            raise ValueError("--dp-private-critic needs public images: D learns from them and the fakes alone")
        if critic is not None and private_scope != "all":
            raise ValueError("--dp-private-params and --dp-private-critic both say what the private images train")
        self.critic = critic
        self._announced_stop = False

    def __call__(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        if phase.name == "Dreg":
            raise ValueError(
                "DP-SGD folds R1 into the per-sample loss of the D step; build the phases with "
                "D_reg_interval=None (train.py does this for --dp=1)"
            )
        if not self.account.can_step():
            self._announce_stop()
            return
        D = phase.module
        params = dict(D.named_parameters())
        phase.opt.zero_grad(set_to_none=True)
        r1_weight = self._r1_weight()
        self._fake_gradients(D, loss, rounds)
        if self.public is not None:
            self._public_real_gradients(D, loss, rounds, r1_weight)
        if self.critic is None:
            self._add_private_gradient(D, loss, rounds, r1_weight)
        sanitize_gradients_(list(params.values()))
        phase.opt.step()
        if self.critic is not None:
            self._critic_step(loss, rounds, r1_weight)
        self.account.record_step()

    def _add_private_gradient(
        self, net: torch.nn.Module, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound], r1_weight: float
    ) -> None:
        """The private term (`_private_real_gradient`) added to `net`'s .grad."""
        params = dict(net.named_parameters())
        for name, g in self._private_real_gradient(net, loss, rounds, r1_weight).items():
            p = params[name]
            p.grad = g if p.grad is None else p.grad + g

    def _critic_step(self, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound], r1_weight: float) -> None:
        """One optimiser step of the private critic: the batch mean of softplus(D_p(G(z, c), c)) (every class's
        renders, no private record) plus the private term."""
        critic, optimizer = self.critic.critic, self.critic.optimizer
        optimizer.zero_grad(set_to_none=True)
        critic.requires_grad_(True)
        try:
            for r in rounds:
                with torch.no_grad():
                    gen_img, _ = loss.run_G(r.gen_z, r.gen_c)
                fake_logits = critic(loss.augment(gen_img), r.gen_c)
                F.softplus(fake_logits).mean().mul(1 / len(rounds)).backward()
        finally:
            critic.requires_grad_(False)
        self._add_private_gradient(critic, loss, rounds, r1_weight)
        sanitize_gradients_(list(critic.parameters()))
        optimizer.step()

    def _fake_gradients(self, D: torch.nn.Module, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        """Batch-mean gradient of softplus(D(aug(G(z, c)))) accumulated into D's .grad (non-private part)."""
        D.requires_grad_(True)
        try:
            for r in rounds:
                fake_loss = loss.discriminator_fake_loss(r.gen_z, r.gen_c)
                training_stats.report("Loss/D/fake", fake_loss)
                fake_loss.mean().mul(1 / len(rounds)).backward()
        finally:
            D.requires_grad_(False)

    def _public_real_gradients(
        self, D: torch.nn.Module, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound], r1_weight: float
    ) -> None:
        """Batch-mean gradient of the public images' real term (softplus(-D(aug(x))) + r1_weight * R1, R1 w.r.t.
        the un-augmented image as in the official loss) times `public_weight`, accumulated into D's .grad. Each
        round draws as many public images as it renders fakes."""
        D.requires_grad_(True)
        try:
            for r in rounds:
                img, c = self.public.draw(len(r.gen_z), r.gen_z.device)
                img.requires_grad_(r1_weight > 0)
                logits = loss.run_D(img, c)
                training_stats.report("Loss/scores/public", logits)
                term = real_logit_loss(logits).flatten()
                if r1_weight > 0:
                    (input_grads,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
                    term = term + r1_weight * r1_penalty(input_grads)
                term.mean().mul(self.public_weight / len(rounds)).backward()
        finally:
            D.requires_grad_(False)

    def _r1_weight(self) -> float:
        """gamma/2 times the lazy gain on R1 steps, else 0."""
        if self.r1_gamma == 0 or self.r1_interval is None or self.account.steps % self.r1_interval != 0:
            return 0.0
        return self.r1_gamma / 2 * self.r1_interval

    def _private_real_gradient(
        self, D: torch.nn.Module, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound], r1_weight: float
    ) -> dict[str, torch.Tensor]:
        """(clipped per-unit sum + noise) / expected batch size, as {param name: tensor}; a round never splits a
        unit, so the rounds' clipped sums add up to the whole draw's."""
        names = private_parameter_names(D, self.private_scope)
        total = {name: torch.zeros_like(p) for name, p in D.named_parameters() if names is None or name in names}
        for r in rounds:
            if r.real_units is None:
                raise ValueError(
                    "DP-SGD: the rounds' reals were not drawn by the Poisson sampler (the run's "
                    "plug-ins need DP's real_sampling)"
                )
            if len(r.real_units) == 0:
                continue
            with torch.no_grad():
                img = loss.augment(r.real_img)
            for part in mechanism.unit_chunks(r.real_units, self.physical_batch or len(r.real_units)):
                units = r.real_units[part] - r.real_units[part][0]
                grads = per_sample.per_sample_real_gradients(D, img[part], r.real_c[part], r1_weight, names)
                part_sum, _ = mechanism.clipped_sum(grads, units, int(units[-1]) + 1, self.config)
                for name in total:
                    total[name] += part_sum[name]
        noisy = mechanism.add_noise(total, self.config)
        scale = self.private_weight / self.expected_batch_size
        return {name: g * scale for name, g in noisy.items()}

    def _announce_stop(self) -> None:
        if not self._announced_stop:
            print(
                f"Privacy budget reached: epsilon {self.account.epsilon():.4f} after {self.account.steps} D steps "
                f"(budget {self.account.epsilon_budget}); D is no longer updated, training stops at this tick"
            )
            self._announced_stop = True
