"""The account reports Opacus's epsilon, continues across resume and never steps past its budget."""

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from spine.dp import accounting
from spine.dp.accounting import PrivacyAccount


@pytest.mark.parametrize("name,cls", [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_epsilon_equals_opacus_stepwise_accountant(name, cls):
    sigma, q, steps, delta = 1.1, 0.02, 300, 1e-5
    reference = cls()
    for _ in range(steps):
        reference.step(noise_multiplier=sigma, sample_rate=q)
    account = PrivacyAccount(noise_multiplier=sigma, sample_rate=q, delta=delta, accountant=name)
    for _ in range(steps):
        account.record_step()
    assert account.epsilon() == pytest.approx(reference.get_epsilon(delta=delta), rel=1e-12)
    assert account.state_dict()["epsilon"] == account.epsilon()


def test_resumed_account_equals_uninterrupted():
    whole = PrivacyAccount(noise_multiplier=0.9, sample_rate=0.05, delta=1e-5, accountant="rdp")
    first = PrivacyAccount(noise_multiplier=0.9, sample_rate=0.05, delta=1e-5, accountant="rdp")
    for _ in range(120):
        whole.record_step()
    for _ in range(70):
        first.record_step()
    resumed = PrivacyAccount.from_state_dict(first.state_dict())
    for _ in range(50):
        resumed.record_step()
    assert resumed.steps == whole.steps == 120
    assert resumed.epsilon() == whole.epsilon()


def test_budget_is_never_exceeded():
    account = PrivacyAccount(noise_multiplier=1.0, sample_rate=0.1, delta=1e-5, accountant="rdp", epsilon_budget=2.0)
    while account.can_step():
        account.record_step()
    assert account.epsilon() <= 2.0 < account.epsilon(account.steps + 1)
    with pytest.raises(RuntimeError, match="budget"):
        account.record_step()


def test_calibrated_sigma_meets_target_for_planned_steps():
    q, steps, delta = 64 / 5000, 3125, 1e-5
    sigma = accounting.calibrate_noise_multiplier(10.0, delta, q, steps, "rdp")
    assert accounting.epsilon_after(steps, sigma, q, delta, "rdp") <= 10.0
    assert accounting.epsilon_after(steps, sigma * 0.97, q, delta, "rdp") > 10.0 - 0.01
    assert sigma == pytest.approx(0.73, abs=0.01)  # Opacus RDP: N=5000, batch 64, 200 kimg, eps=10


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="--dp-accountant"):
        PrivacyAccount(noise_multiplier=1, sample_rate=0.1, delta=1e-5, accountant="gdp")
    with pytest.raises(ValueError, match="--dp-delta"):
        PrivacyAccount(noise_multiplier=1, sample_rate=0.1, delta=0)
