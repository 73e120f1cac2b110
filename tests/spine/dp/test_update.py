"""DPDiscriminatorUpdate: without clip/noise and with q = 1 it is the ordinary D step (R1 included); it stops at
the budget; its reals come through the loop's data path, drawn by DP's Poisson sampling. The account's plug-ins
(spine.dp.ledger) stop the run, checkpoint the account and refuse another mechanism on resume."""

import copy

import numpy as np
import pytest
import torch
from tolerances import rounding_tol

from spine.dp import sampling
from spine.dp.accounting import PrivacyAccount
from spine.dp.ledger import AccountRecord, BudgetStop
from spine.dp.mechanism import MechanismConfig
from spine.dp.update import DPDiscriminatorUpdate
from training.data_path import DrawnBatches
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator
from training.phase_update import GradientStep, Phase, PhaseRound


class TinyDataset:
    def __init__(self, n: int = 6):
        rng = np.random.RandomState(0)
        self.images = rng.randint(0, 256, [n, 1, 16, 16]).astype(np.uint8)
        self.labels = np.eye(2, dtype=np.float32)[np.arange(n) % 2]
        self.image_shape = [1, 16, 16]
        self.label_dim = 2

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def image_info(self, i):
        return dict(file=f"{i}.png", image_id=str(i), study_id=None)


def make_nets():
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=128, channel_max=8),
    )
    D = Discriminator(
        c_dim=2,
        img_resolution=16,
        img_channels=1,
        channel_base=128,
        channel_max=8,
        epilogue_kwargs=dict(mbstd_num_channels=0),
    )
    return G.requires_grad_(False), D.requires_grad_(False)


def make_update(dataset, config, sample_rate=1.0, budget=None, r1_interval=None):
    account = PrivacyAccount(
        noise_multiplier=config.noise_multiplier,
        sample_rate=sample_rate,
        delta=1e-3,
        accountant="rdp",
        epsilon_budget=budget,
        differentially_private=config.is_private,
    )
    reals = sampling.PoissonSampling("image", sample_rate, len(dataset))
    update = DPDiscriminatorUpdate(account, config, reals.expected_batch_size, r1_gamma=1.0, r1_interval=r1_interval)
    update.reals = DrawnBatches(dataset, reals(dataset), torch.device("cpu"))
    return update


def rounds_for(update, num_rounds=1, n_fake=6):
    """The loop's rounds: reals drawn through the data path (the update's sampler, or every image in order for the
    standard step), fakes split evenly."""
    if isinstance(update, DPDiscriminatorUpdate):
        reals = next(update.reals).split(num_rounds)
    else:
        full = DrawnBatches(TinyDataset(), sampling.PoissonSampler([[i] for i in range(6)], 1.0), "cpu")
        reals = next(full).split(num_rounds)
    torch.manual_seed(5)
    gen_z = torch.randn(n_fake, 8).split(n_fake // num_rounds)
    gen_c = torch.eye(2)[torch.arange(n_fake) % 2].split(n_fake // num_rounds)
    return [PhaseRound(r.img, r.c, z, c, r.units) for r, z, c in zip(reals, gen_z, gen_c)]


def step_with(update, G, D, r1_gamma=0.0, num_rounds=1):
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=r1_gamma, style_mixing_prob=0, pl_weight=0)
    phase = Phase("Dboth", D, torch.optim.SGD(D.parameters(), lr=1.0), 1, update)
    rounds = rounds_for(update, num_rounds)
    torch.manual_seed(7)
    update(phase, loss, rounds)


def assert_same_params(D, D_ref):
    # Per-sample gradients summed in another order than one backward, then Adam: float32 rounding through the tiny
    # D's ~100-term sums, relative to the weights' size (as in tests/training/test_distributed.py).
    tol = rounding_tol(torch.float32, 100)
    for (name, p), p_ref in zip(D.named_parameters(), D_ref.parameters()):
        assert torch.allclose(p, p_ref, atol=tol, rtol=tol), name


def test_without_clip_and_noise_equals_standard_step():
    dataset = TinyDataset()
    G, D = make_nets()
    D_ref = copy.deepcopy(D)
    step_with(make_update(dataset, MechanismConfig(1.0, 1.0, clip=False, noise=False)), G, D, num_rounds=2)
    step_with(GradientStep(), G, D_ref, num_rounds=2)
    assert_same_params(D, D_ref)


def test_r1_reaches_the_gradient():
    # R1 every step (interval 1, weight gamma/2): the same step as the standard Dboth with R1 gamma 1 ...
    dataset = TinyDataset()
    G, D = make_nets()
    D_ref, D_no_r1 = copy.deepcopy(D), copy.deepcopy(D)
    step_with(make_update(dataset, MechanismConfig(1.0, 1.0, clip=False, noise=False), r1_interval=1), G, D)
    step_with(GradientStep(), G, D_ref, r1_gamma=1.0)
    assert_same_params(D, D_ref)
    # ... and a different one from the step without R1.
    step_with(make_update(dataset, MechanismConfig(1.0, 1.0, clip=False, noise=False)), G, D_no_r1)
    assert any(not torch.allclose(p, q, atol=1e-4) for p, q in zip(D.parameters(), D_no_r1.parameters()))


def test_clipped_private_part_is_bounded():
    # Fake term and noise off: the real part is sum(clipped)/E[batch], so the update norm is <= C.
    dataset = TinyDataset()
    G, D = make_nets()
    before = [p.clone() for p in D.parameters()]
    update = make_update(dataset, MechanismConfig(1e-3, 0.0))
    update._fake_gradients = lambda *args: None
    step_with(update, G, D)
    change = torch.cat([(p - b).flatten() for p, b in zip(D.parameters(), before)]).norm()
    assert 0 < change <= 1e-3 * 1.0001


def test_stops_at_budget():
    dataset = TinyDataset()
    G, D = make_nets()
    update = make_update(dataset, MechanismConfig(1.0, 1.0), sample_rate=0.5, budget=None)
    budget = update.account.epsilon(3) + 1e-9  # three steps fit, a fourth would not
    update = make_update(dataset, MechanismConfig(1.0, 1.0), sample_rate=0.5, budget=budget)
    changed = []
    for _ in range(5):
        before = [p.clone() for p in D.parameters()]
        step_with(update, G, D)
        changed.append(any(not torch.equal(p, b) for p, b in zip(D.parameters(), before)))
    assert changed == [True, True, True, False, False]
    assert update.account.steps == 3 and "privacy budget epsilon=" in BudgetStop(update.account).stop_reason()
    assert update.account.epsilon() <= budget
    assert AccountRecord(update.account).snapshot_metadata()["privacy"]["steps"] == 3


def test_resume_state_round_trip_and_mismatch():
    dataset = TinyDataset()
    update = make_update(dataset, MechanismConfig(1.0, 1.0), sample_rate=0.5)
    update.account.steps = 11
    other = make_update(dataset, MechanismConfig(1.0, 1.0), sample_rate=0.5)
    saved = AccountRecord(update.account).state_dict()
    AccountRecord(other.account).load_state_dict(saved)
    assert other.account.steps == 11 and other.account.epsilon() == update.account.epsilon()
    with pytest.raises(ValueError, match="noise_multiplier"):
        AccountRecord(make_update(dataset, MechanismConfig(1.0, 2.0), sample_rate=0.5).account).load_state_dict(saved)
    with pytest.raises(ValueError, match="not trained with --dp=1"):
        AccountRecord(other.account).load_state_dict(None)


def test_lazy_r1_runs_inside_the_step():
    dataset = TinyDataset()
    G, D = make_nets()
    update = make_update(dataset, MechanismConfig(1.0, 0.0, noise=False), r1_interval=2)
    assert update._r1_weight() == pytest.approx(1.0)  # gamma/2 * interval at step 0
    step_with(update, G, D)
    assert update._r1_weight() == 0.0


@pytest.mark.parametrize("physical_batch", [1, 2, 4])
def test_virtual_step_equals_one_shot(physical_batch):
    """Per-sample gradients in micro-batches of at most `physical_batch` images, clipped sums added, noise drawn once:
    the same private gradient as the whole logical batch at once (clipping active, noise on, same RNG state)."""
    dataset = TinyDataset()
    G, D = make_nets()
    config = MechanismConfig(1e-2, 1.0)
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=1.0, style_mixing_prob=0, pl_weight=0)
    results = []
    for size in (None, physical_batch):
        update = make_update(dataset, config)
        update.physical_batch = size
        rounds = rounds_for(update, num_rounds=1)
        torch.manual_seed(7)
        results.append(update._private_real_gradient(D, loss, rounds, r1_weight=0.5))
    # Six clipped rows (norm <= C each) summed in another grouping: float32 rounding of a six-term sum at size 6 C,
    # over the expected batch of 6.
    tol = rounding_tol(torch.float32, 6, magnitude=6 * 1e-2) / 6
    for name, whole in results[0].items():
        assert torch.allclose(results[1][name], whole, atol=tol, rtol=0), name


def test_tick_report_states_the_total_and_each_part():
    from spine.dp.ledger import PrivacyReport

    account = PrivacyAccount(
        noise_multiplier=1.0, sample_rate=0.1, delta=1e-5, accountant="rdp", composed_with=[["judge", 2.0, 0.1, 50]]
    )
    account.steps = 20
    parts = account.epsilon_parts()
    assert PrivacyReport(account).report_tick() == (
        f"epsilon {account.epsilon():.4f} (composed: discriminator {parts['discriminator']:.4f} + "
        f"judge {parts['judge']:.4f})"
    )
