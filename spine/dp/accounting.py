"""The privacy account of a DP-SGD run: Opacus's RDP or PRV accountant over (sigma, q, steps), persisted.

One accountant step is one D update that touched real data (Poisson-sampled with rate q, Gaussian noise with
multiplier sigma). Sigma and q stay fixed for the whole run, so the account is fully described by plain numbers
(`PrivacyAccount`), stored in every checkpoint and snapshot; a resumed run continues the same count, so its
epsilon equals an uninterrupted run's.

Budget: `max_steps` is the largest step count whose epsilon stays within the budget (binary search on the
accountant, done once); the D update refuses a step beyond it, so a run never spends more than its budget.
"""

from __future__ import annotations

import dataclasses
import functools
import math

ACCOUNTANTS = ("rdp", "prv")


def check_accountant(name: str) -> None:
    """Refuse an accountant Opacus does not offer here, naming the option."""
    if name not in ACCOUNTANTS:
        raise ValueError(f"--dp-accountant={name!r}: expected one of {ACCOUNTANTS}")


@functools.lru_cache(maxsize=256)
def epsilon_after(steps: int, noise_multiplier: float, sample_rate: float, delta: float, accountant: str) -> float:
    """Epsilon spent after `steps` Poisson-subsampled Gaussian steps (0 steps: 0); cached per arguments."""
    check_accountant(accountant)
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    from opacus.accountants import create_accountant  # imported on use: opacus takes seconds to import

    acc = create_accountant(mechanism=accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return float(acc.get_epsilon(delta=delta))


def calibrate_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Smallest sigma (Opacus's search, tolerance 0.01 in epsilon) that keeps `steps` steps within the target."""
    check_accountant(accountant)
    if not target_epsilon > 0:
        raise ValueError(f"--dp-epsilon must be positive, got {target_epsilon}")
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=int(steps),
            accountant=accountant,
        )
    )


def max_steps_within(
    epsilon_budget: float, noise_multiplier: float, sample_rate: float, delta: float, accountant: str, upper_hint: int
) -> int:
    """Largest n with epsilon_after(n) <= budget (epsilon grows with n); searches up to ~64x `upper_hint`."""

    def within(n: int) -> bool:
        return epsilon_after(n, noise_multiplier, sample_rate, delta, accountant) <= epsilon_budget

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
    """Everything needed to state (and continue) a run's guarantee; plain data for checkpoints/snapshots."""

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

    def __post_init__(self) -> None:
        check_accountant(self.accountant)
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if not 0 < self.delta < 1:
            raise ValueError(f"--dp-delta must be in (0, 1), got {self.delta}")

    def epsilon(self, steps: int | None = None) -> float:
        """Epsilon at `delta` after `steps` (default: the steps taken so far)."""
        return epsilon_after(
            self.steps if steps is None else steps, self.noise_multiplier, self.sample_rate, self.delta, self.accountant
        )

    @functools.cached_property
    def max_steps(self) -> int | None:
        """Largest step count within `epsilon_budget` (None: no budget)."""
        if self.epsilon_budget is None:
            return None
        return max_steps_within(
            self.epsilon_budget,
            self.noise_multiplier,
            self.sample_rate,
            self.delta,
            self.accountant,
            upper_hint=max(self.steps, 1000),
        )

    def can_step(self) -> bool:
        """Whether one more step keeps epsilon within the budget."""
        return self.max_steps is None or self.steps + 1 <= self.max_steps

    def record_step(self) -> None:
        if not self.can_step():
            raise RuntimeError(f"privacy budget epsilon={self.epsilon_budget} reached after {self.steps} steps")
        self.steps += 1

    def state_dict(self) -> dict:
        """Plain-data description with the current epsilon (for checkpoints, snapshot metadata, reports)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dict(fields, epsilon=self.epsilon() if self.differentially_private else None)

    @classmethod
    def from_state_dict(cls, state: dict) -> PrivacyAccount:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})
