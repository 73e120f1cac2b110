"""Training phases and the update rule that turns one phase's batch into one optimiser step.

A `Phase` is one entry of the loop's schedule (Gmain, Greg, Dmain, Dreg, or G/Dboth): the loss phase name, the
network it trains, its optimiser, its lazy-regularisation interval and its *update rule*.

The update rule is the plug-in point for alternative optimisation of a network, DP-SGD in particular:

    class PhaseUpdate(Protocol):
        def __call__(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None

It receives every accumulation round of the iteration for this phase (each a `PhaseRound` of this process's
reals, labels, latents and fake labels) and must leave `phase.module` updated, identically on every process.
`GradientStep` is the default: zero the gradients, back-propagate each round's loss with gain interval / len(rounds)
(so the gradient is the mean over the whole batch whatever the split), average across processes, replace NaN by 0
and +-inf by +-1e5, step the optimiser. `EveryNthStep` wraps a rule so that it acts on every n-th call of each
phase only (n discriminator steps per generator step: the G phases get `EveryNthStep(GradientStep(), n)`). The
loop gives the D phases the update rule of its plug-ins' `discriminator_update` (and the G phases
`generator_update`), so a DP implementation replaces it without touching the loop; it may use the loss's
per-sample terms (`StyleGAN2Loss.discriminator_fake_loss`, `training.loss.real_logit_loss`, `r1_penalty`) to clip
per-sample gradients. An update rule is a `training.plugins.Plugin`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import torch

from training.distributed import all_reduce_mean_
from training.loss import StyleGAN2Loss
from training.plugins import Plugin


@dataclasses.dataclass
class PhaseRound:
    """One accumulation round of one process: reals in [-1, 1], their labels, latents and fake labels.

    With drawn real batches (a plug-in's `real_sampling`, see `training.data_path`) `real_units` numbers the unit of
    each real (0..k-1) and the round's reals vary in number, possibly none; with the shuffled stream it is None.
    """

    real_img: torch.Tensor
    real_c: torch.Tensor
    gen_z: torch.Tensor
    gen_c: torch.Tensor
    real_units: torch.Tensor | None = None


@dataclasses.dataclass
class Phase:
    """One schedule entry; it runs when batch_idx % interval == 0 and scales its loss by `interval`."""

    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int
    update: PhaseUpdate


class PhaseUpdate(Protocol):
    def __call__(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        """Apply one optimiser step of `phase` from this process's rounds (collective across processes)."""
        ...


def sanitize_gradients_(params: Sequence[torch.nn.Parameter]) -> None:
    """NaN -> 0 and +-inf -> +-1e5 in place, so one bad batch cannot poison Adam's moments."""
    for param in params:
        if param.grad is not None:
            torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)


class GradientStep(Plugin):
    """The standard update: batch-mean gradients averaged over processes, sanitised, one optimiser step."""

    def __call__(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        params = [p for p in phase.module.parameters()]
        phase.opt.zero_grad(set_to_none=True)
        phase.module.requires_grad_(True)
        try:
            for r in rounds:
                loss.accumulate_gradients(
                    phase.name, r.real_img, r.real_c, r.gen_z, r.gen_c, gain=phase.interval / len(rounds)
                )
        finally:
            phase.module.requires_grad_(False)
        all_reduce_mean_(params)
        sanitize_gradients_(params)
        self.transform_gradients_(params)
        phase.opt.step()

    def transform_gradients_(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Hook before the optimiser step (e.g. the authors' noise-then-clip scheme); the standard step has none."""


class EveryNthStep(Plugin):
    """`inner` applied on the 1st, (n+1)th, (2n+1)th, ... call of each phase (counted per phase name, so a lazy
    regularisation phase keeps its ratio to its main phase); the other calls leave the module as it is.

    With the G phases wrapped, D takes n steps per G step. The call counts are checkpointed, so a resumed run takes
    its G steps at the iterations an uninterrupted one would.
    """

    def __init__(self, inner: PhaseUpdate, n: int):
        if n < 1:
            raise ValueError(f"EveryNthStep: n must be >= 1, got {n}")
        self.inner = inner
        self.n = int(n)
        self.calls: dict[str, int] = {}

    def __call__(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        count = self.calls.get(phase.name, 0)
        self.calls[phase.name] = count + 1
        if count % self.n == 0:
            self.inner(phase, loss, rounds)

    def state_dict(self) -> dict:
        return dict(n=self.n, calls=dict(self.calls))

    def load_state_dict(self, state: dict | None) -> None:
        if state is None or state["n"] != self.n:
            found = "none" if state is None else f"n={state['n']}"
            raise ValueError(f"resume: the checkpoint's step schedule ({found}) differs from this run's n={self.n}")
        self.calls = {name: int(count) for name, count in state["calls"].items()}
