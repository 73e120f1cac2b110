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


def test_calibration_is_opacus_search_without_composed_parts():
    from opacus.accountants.utils import get_noise_multiplier

    q, steps, delta = 64 / 5000, 3125, 1e-5
    ours = accounting.calibrate_noise_multiplier(10.0, delta, q, steps, "rdp")
    assert ours == get_noise_multiplier(
        target_epsilon=10.0, target_delta=delta, sample_rate=q, steps=steps, accountant="rdp"
    )


def test_composed_full_batch_gaussians_equal_one_gaussian():
    # Closed form: n1 steps at sigma1 and n2 at sigma2 with q = 1 are one Gaussian mechanism with
    # sigma_eff = (n1 / sigma1^2 + n2 / sigma2^2)^(-1/2) (RDP alpha / (2 sigma^2) adds up), whichever accountant.
    n1, sigma1, n2, sigma2, delta = 30, 4.0, 7, 2.5, 1e-5
    sigma_eff = (n1 / sigma1**2 + n2 / sigma2**2) ** -0.5
    composed = accounting.composed_epsilon(((sigma1, 1.0, n1), (sigma2, 1.0, n2)), delta, "rdp")
    assert composed == pytest.approx(accounting.epsilon_after(1, sigma_eff, 1.0, delta, "rdp"), rel=1e-12)


@pytest.mark.parametrize("name,cls", [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_account_composed_with_the_judge_equals_opacus_composing_both(name, cls):
    d_sigma, d_q, d_steps, j_sigma, j_q, j_steps, delta = 1.1, 0.02, 300, 1.5, 0.05, 200, 1e-5
    reference, judge_alone = cls(), cls()
    for _ in range(j_steps):  # the judge trains first, then D: one accountant over both
        reference.step(noise_multiplier=j_sigma, sample_rate=j_q)
        judge_alone.step(noise_multiplier=j_sigma, sample_rate=j_q)
    for _ in range(d_steps):
        reference.step(noise_multiplier=d_sigma, sample_rate=d_q)
    account = PrivacyAccount(
        noise_multiplier=d_sigma,
        sample_rate=d_q,
        delta=delta,
        accountant=name,
        composed_with=[["judge", j_sigma, j_q, j_steps]],
    )
    for _ in range(d_steps):
        account.record_step()
    assert account.epsilon() == pytest.approx(reference.get_epsilon(delta=delta), rel=1e-6)
    parts = account.state_dict()["epsilon_parts"]
    assert parts["judge"] == pytest.approx(judge_alone.get_epsilon(delta=delta), rel=1e-6)
    assert parts["discriminator"] == accounting.epsilon_after(d_steps, d_sigma, d_q, delta, name)
    assert max(parts.values()) < account.epsilon() < sum(parts.values())


def test_budget_and_calibration_include_the_composed_spend():
    judge = (1.5, 0.05, 200)
    q, steps, delta = 0.02, 300, 1e-5
    sigma = accounting.calibrate_noise_multiplier(4.0, delta, q, steps, "rdp", spent=(judge,))
    total = accounting.composed_epsilon(((sigma, q, steps), judge), delta, "rdp")
    assert 4.0 - 0.01 <= total <= 4.0
    account = PrivacyAccount(
        noise_multiplier=sigma,
        sample_rate=q,
        delta=delta,
        accountant="rdp",
        epsilon_budget=4.0,
        composed_with=[["judge", *judge]],
    )
    assert account.max_steps >= steps and account.epsilon(account.max_steps + 1) > 4.0
    with pytest.raises(ValueError, match="--dp-epsilon=0.5: the mechanisms composed into the account already spent"):
        accounting.calibrate_noise_multiplier(0.5, delta, q, steps, "rdp", spent=(judge,))


def test_composed_parts_survive_resume():
    account = PrivacyAccount(
        noise_multiplier=1.0, sample_rate=0.1, delta=1e-5, accountant="rdp", composed_with=[("judge", 2, 0.1, 50)]
    )
    account.steps = 9
    restored = PrivacyAccount.from_state_dict(account.state_dict())
    assert restored.composed_with == [["judge", 2.0, 0.1, 50]] and restored.epsilon() == account.epsilon()
