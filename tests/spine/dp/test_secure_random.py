"""spine.dp.secure_random and the --dp-secure-rng paths: OS-CSPRNG noise and Poisson sampling."""

import numpy as np
import torch
from click.testing import CliRunner

from spine.dp import mechanism, sampling
from spine.dp.secure_random import secure_normal, secure_uniform
from training.dataset import construct_dataset


def test_uniform_maps_the_os_bytes_onto_0_1(monkeypatch):
    monkeypatch.setattr("os.urandom", lambda n: b"\xff" * n)
    assert np.all(secure_uniform(3) == 1.0)  # (2^53 - 1 + 1) * 2^-53
    monkeypatch.setattr("os.urandom", lambda n: b"\x00" * n)
    assert np.all(secure_uniform(3) == 2.0**-53)  # never 0, so log() in Box-Muller is finite


def test_normal_has_unit_moments_and_ignores_the_torch_seed():
    n = 200_000
    torch.manual_seed(0)
    a = secure_normal((n,), torch.float64)
    torch.manual_seed(0)
    b = secure_normal((n,), torch.float64)
    assert not torch.equal(a, b)  # the torch seed plays no part
    assert abs(a.mean().item()) < 5 / n**0.5
    assert abs(a.std().item() - 1) < 5 * (0.5 / n) ** 0.5
    assert abs(((a.abs() < 1).double().mean().item()) - 0.6826895) < 0.005  # the Gaussian's 1-sigma mass
    assert secure_normal((3, 5)).shape == (3, 5) and secure_normal((7,)).dtype == torch.float32


def test_secure_mechanism_noise_has_the_stated_std():
    config = mechanism.MechanismConfig(max_grad_norm=2.0, noise_multiplier=0.5, secure_rng=True)
    total = {"w": torch.zeros(400, 500)}
    noisy = mechanism.add_noise(total, config)["w"]
    n = noisy.numel()
    assert abs(noisy.std().item() - config.noise_std) < 5 * config.noise_std * (0.5 / n) ** 0.5


def test_secure_poisson_sampler_includes_units_at_the_sample_rate():
    sampler = sampling.PoissonSampler([[i] for i in range(20_000)], sample_rate=0.1, secure=True)
    counts = [sampler.sample().num_units for _ in range(5)]
    expected, sd = 2_000, (20_000 * 0.1 * 0.9) ** 0.5
    assert all(abs(c - expected) < 5 * sd for c in counts)
    assert len(set(counts)) > 1


def test_option_reaches_the_sampler_and_the_mechanism(tmp_path, monkeypatch, dp_dataset):
    import train

    calls = []
    monkeypatch.setattr(train, "launch", lambda args: calls.append(args))
    result = CliRunner().invoke(
        train.main,
        [
            "--outdir",
            str(tmp_path / "runs"),
            "--data",
            dp_dataset,
            "--cfg",
            "demo",
            "--cond",
            "1",
            "--batch",
            "4",
            "--kimg",
            "1",
            "--dp",
            "1",
            "--dp-noise-multiplier",
            "1",
            "--dp-delta",
            "1e-3",
            "--dp-secure-rng",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    args = calls[-1]
    assert args.dp["secure_rng"] is True
    plugins = train.build_plugins(args, torch.device("cpu"))
    assert plugins.discriminator_update.config.secure_rng
    assert plugins.real_sampling(construct_dataset(args.training_set_kwargs)).secure
