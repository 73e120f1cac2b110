"""The privacy account's plug-ins, one job each, all reading the `PrivacyAccount` the DP update records steps in:

AccountRecord   the account in the checkpoint (continued on resume, same mechanism only) and in snapshots
BudgetStop      stops the run once the next step would exceed the epsilon budget
PrivacyReport   Privacy/* statistics and the epsilon (or NOT-DP) on every tick's status line

The account states the total epsilon (D's steps composed with any DP-trained judge) and each part's own epsilon;
what read the private images outside the account is named in it (`OUTSIDE_ACCOUNT`, plus `JUDGE_OUTSIDE_ACCOUNT`
for a clinical judge trained without DP), so every snapshot and audit report carries the list.
"""

from __future__ import annotations

from spine.dp.accounting import PrivacyAccount
from torch_utils import training_stats
from training.plugins import Plugin

OUTSIDE_ACCOUNT = (
    "the epsilon bounds what training reveals about one privacy unit (image or study); a patient with several "
    "studies is protected only at k times epsilon (group privacy) when the unit is the study",
    "metrics computed on the private images (FID, precision/recall against them) and any model selection, "
    "snapshot choice or hyperparameter search based on them (each look at the data costs privacy)",
    "the image grids and logs in the run directory (reals.png shows training images)",
    "a pretrained or transfer-learning start trained on the same patients",
    "pseudo-random (not cryptographic) noise unless --dp-secure-rng=1",
)
JUDGE_OUTSIDE_ACCOUNT = (
    "the clinical loss's judge (a classifier trained without DP; in the experiments on the same private images): "
    "the generator learns from it outside the account"
)
MECHANISM_FIELDS = ("noise_multiplier", "sample_rate", "delta", "accountant", "max_grad_norm", "unit", "composed_with")


class AccountRecord(Plugin):
    """Checkpoint state and snapshot metadata (`privacy`) of the account."""

    def __init__(self, account: PrivacyAccount):
        self.account = account

    def state_dict(self) -> dict:
        return self.account.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        """Continue the checkpoint's account: same sigma, q, delta, accountant, unit and C, its step count."""
        if state is None:
            raise ValueError("the checkpoint has no privacy account: it was not trained with --dp=1")
        saved = PrivacyAccount.from_state_dict(state)
        for name in MECHANISM_FIELDS:
            if getattr(saved, name) != getattr(self.account, name):
                raise ValueError(
                    f"resume: the checkpoint's privacy account has {name}={getattr(saved, name)!r}, "
                    f"this run {getattr(self.account, name)!r}; a continued run must keep its mechanism"
                )
        self.account.steps = saved.steps

    def snapshot_metadata(self) -> dict:
        return dict(privacy=self.account.state_dict())


class BudgetStop(Plugin):
    """Ends the run (with a final snapshot and checkpoint) once the budget allows no further step."""

    def __init__(self, account: PrivacyAccount):
        self.account = account

    def stop_reason(self) -> str:
        if self.account.can_step():
            return ""
        return (
            f"privacy budget epsilon={self.account.epsilon_budget:g} reached after {self.account.steps} steps "
            f"(epsilon {self.account.epsilon():.4f} spent); stopping with a final snapshot"
        )


class PrivacyReport(Plugin):
    """Reports Privacy/* once per tick; the status line shows the epsilon spent, or NOT-DP for an ablation."""

    def __init__(self, account: PrivacyAccount):
        self.account = account

    def report_tick(self) -> str:
        training_stats.report0("Privacy/steps", self.account.steps)
        if not self.account.differentially_private:
            return f"NOT-DP({self.account.note})"
        epsilon = self.account.epsilon()
        training_stats.report0("Privacy/epsilon", epsilon)
        training_stats.report0("Privacy/delta", self.account.delta)
        if not self.account.composed_with:
            return f"epsilon {epsilon:.4f}"
        parts = " + ".join(f"{name} {value:.4f}" for name, value in self.account.epsilon_parts().items())
        return f"epsilon {epsilon:.4f} (composed: {parts})"
