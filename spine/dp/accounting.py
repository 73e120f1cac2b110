"""The privacy account of a DP-SGD run: Opacus's RDP or PRV accountant over (sigma, q, steps), persisted.

One accountant step is one D update that touched real data (Poisson-sampled with rate q, Gaussian noise with
multiplier sigma). Sigma and q stay fixed for the whole run, so the account is fully described by plain numbers
(`PrivacyAccount`), stored in every checkpoint and snapshot; a resumed run continues the same count, so its
epsilon equals an uninterrupted run's.

One epsilon for the pipeline: other mechanisms that read the same private records before the run (the clinical
loss's judge trained with DP-SGD, `spine.dp.judge`) enter the account as fixed (sigma, q, steps) entries
(`PrivacyAccount.composed_with`). The accountant composes them with D's steps (RDP: the RDP curves summed over the
same orders, then one conversion to (epsilon, delta); PRV: the privacy loss distributions composed), so the total
is one number, never more than the sum of the parts' epsilons; each part's own epsilon is reported beside it.

Budget: `max_steps` is the largest D step count whose total epsilon stays within the budget (binary search on the
accountant, done once); the D update refuses a step beyond it, so a run never spends more than its budget.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

ACCOUNTANTS = ("rdp", "prv")
MAX_NOISE_MULTIPLIER = 1e6  # Opacus's bound for the noise search
Mechanism = tuple[float, float, int]  # (noise multiplier sigma, sample rate q, steps) of a Poisson Gaussian mechanism


def check_accountant(name: str) -> None:
    """Refuse an accountant Opacus does not offer here, naming the option."""
    if name not in ACCOUNTANTS:
        raise ValueError(f"--dp-accountant={name!r}: expected one of {ACCOUNTANTS}")


@functools.lru_cache(maxsize=1024)
def composed_epsilon(mechanisms: tuple[Mechanism, ...], delta: float, accountant: str) -> float:
    """Epsilon at `delta` of all `mechanisms` applied to the same records (0 steps: nothing); cached."""
    check_accountant(accountant)
    history = [(float(sigma), float(q), int(n)) for sigma, q, n in mechanisms if n > 0]
    if not history:
        return 0.0
    if any(sigma <= 0 for sigma, _, _ in history):
        return math.inf
    from opacus.accountants import create_accountant  # imported on use: opacus takes seconds to import

    acc = create_accountant(mechanism=accountant)
    acc.history = history
    return float(acc.get_epsilon(delta=delta))


def epsilon_after(steps: int, noise_multiplier: float, sample_rate: float, delta: float, accountant: str) -> float:
    """Epsilon spent after `steps` Poisson-subsampled Gaussian steps (0 steps: 0)."""
    return composed_epsilon(((noise_multiplier, sample_rate, steps),), delta, accountant)


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str,
    spent: Sequence[Mechanism] = (),
) -> float:
    """Smallest sigma (tolerance 0.01 in epsilon) that keeps `steps` steps, composed with the mechanisms already
    `spent` on the same records, within the target. Opacus's search (`get_noise_multiplier`), on the composed
    epsilon: without `spent` it returns Opacus's sigma."""
    check_accountant(accountant)
    if not target_epsilon > 0:
        raise ValueError(f"--dp-epsilon must be positive, got {target_epsilon}")
    already = composed_epsilon(tuple(spent), delta, accountant)
    if already >= target_epsilon:
        raise ValueError(
            f"--dp-epsilon={target_epsilon:g}: the mechanisms composed into the account already spent "
            f"epsilon {already:.4g} at delta {delta:g}; raise --dp-epsilon or spend less on them"
        )

    def epsilon(sigma: float) -> float:
        return composed_epsilon(((sigma, sample_rate, int(steps)), *spent), delta, accountant)

    sigma_low, sigma_high, eps_high = 0.0, 10.0, math.inf
    while eps_high > target_epsilon:
        sigma_high *= 2
        eps_high = epsilon(sigma_high)
        if sigma_high > MAX_NOISE_MULTIPLIER:
            raise ValueError(f"--dp-epsilon={target_epsilon:g}: the privacy budget is too low")
    while target_epsilon - eps_high > 0.01:
        sigma = (sigma_low + sigma_high) / 2
        eps = epsilon(sigma)
        if eps < target_epsilon:
            sigma_high, eps_high = sigma, eps
        else:
            sigma_low = sigma
    return sigma_high


def max_steps_within(epsilon_budget: float, epsilon_of: Callable[[int], float], upper_hint: int) -> int:
    """Largest n with epsilon_of(n) <= budget (epsilon grows with n); searches up to ~64x `upper_hint`."""

    def within(n: int) -> bool:
        return epsilon_of(n) <= epsilon_budget

    if not within(1):
        return 0
    lo, hi = 1, max(int(upper_hint), 2)
    while within(hi):
        lo, hi = hi, hi * 2
        if hi > 64 * max(int(upper_hint), 2):
            return lo  # practically unbounded for this run
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if within(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclasses.dataclass
class PrivacyAccount:
    """Everything needed to state (and continue) a run's guarantee; plain data for checkpoints/snapshots.

    `composed_with`: [[name, sigma, q, steps], ...] of the other mechanisms on the same records (fixed; e.g. the
    DP-trained judge). `declared_public`: components the user declared trained on public data (no cost).
    `outside_account`: what else read the private records without being accounted for, named in every report
    (metrics, model selection, image grids, a judge trained without DP).
    """

    noise_multiplier: float
    sample_rate: float
    delta: float
    accountant: str = "prv"
    max_grad_norm: float = 1.0
    unit: str = "image"
    steps: int = 0
    epsilon_budget: float | None = None
    differentially_private: bool = True
    note: str = ""
    composed_with: list = dataclasses.field(default_factory=list)
    declared_public: list = dataclasses.field(default_factory=list)
    outside_account: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        check_accountant(self.accountant)
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if not 0 < self.delta < 1:
            raise ValueError(f"--dp-delta must be in (0, 1), got {self.delta}")
        self.composed_with = [[str(name), float(s), float(q), int(n)] for name, s, q, n in self.composed_with]

    def mechanisms(self, steps: int | None = None) -> tuple[Mechanism, ...]:
        """D's mechanism after `steps` (default: so far), then the composed ones."""
        own = (self.noise_multiplier, self.sample_rate, self.steps if steps is None else steps)
        return (own, *((s, q, n) for _, s, q, n in self.composed_with))

    def epsilon(self, steps: int | None = None) -> float:
        """Total epsilon at `delta` after `steps` D steps (default: the steps taken so far), composed parts included."""
        return composed_epsilon(self.mechanisms(steps), self.delta, self.accountant)

    def epsilon_parts(self) -> dict[str, float]:
        """Each part's own epsilon at `delta` (D's steps so far, each composed mechanism); they compose to less
        than their sum."""
        parts = {
            "discriminator": epsilon_after(
                self.steps, self.noise_multiplier, self.sample_rate, self.delta, self.accountant
            )
        }
        for name, sigma, q, n in self.composed_with:
            parts[name] = epsilon_after(n, sigma, q, self.delta, self.accountant)
        return parts

    @functools.cached_property
    def max_steps(self) -> int | None:
        """Largest D step count within `epsilon_budget` (None: no budget)."""
        if self.epsilon_budget is None:
            return None
        return max_steps_within(self.epsilon_budget, self.epsilon, upper_hint=max(self.steps, 1000))

    def can_step(self) -> bool:
        """Whether one more step keeps epsilon within the budget."""
        return self.max_steps is None or self.steps + 1 <= self.max_steps

    def record_step(self) -> None:
        if not self.can_step():
            raise RuntimeError(f"privacy budget epsilon={self.epsilon_budget} reached after {self.steps} steps")
        self.steps += 1

    def state_dict(self) -> dict:
        """Plain-data description with the current total epsilon and each part's (for checkpoints, snapshot
        metadata, reports)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields = dict(fields, composed_with=[list(entry) for entry in self.composed_with])
        private = self.differentially_private
        return dict(
            fields, epsilon=self.epsilon() if private else None, epsilon_parts=self.epsilon_parts() if private else None
        )

    @classmethod
    def from_state_dict(cls, state: dict) -> PrivacyAccount:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})
