"""Projection: an image the generator drew from a known w is recovered; the schedule and the noise rules."""

import math

import pytest
import torch

from metrics.perceptual import pixel_distance, squared_distance
from metrics.projection import (
    ProjectionOptions,
    learning_rate,
    noise_regularization,
    project,
    renormalize,
    synthesize,
    to_distance_input,
    w_statistics,
)
from training.networks import Generator


def small_generator(c_dim: int = 2, channels: int = 1) -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=16,
        img_channels=channels,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=256, channel_max=16),
    ).eval()


def drawn_target(G: Generator, seed: int, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [1, w_dim], its image in [0, 255] floats, unclamped so that it is exactly reachable)."""
    with torch.no_grad():
        w = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed)), c)[:, 0]
        return w, (synthesize(G, w) + 1) * 127.5


@pytest.mark.parametrize("c_dim, channels, classes", [(2, 1, None), (2, 1, [1]), (0, 3, None)])
def test_projection_recovers_an_image_drawn_from_a_known_w(c_dim, channels, classes):
    G = small_generator(c_dim, channels)
    c = torch.tensor([[0.0, 1.0]]) if c_dim else torch.zeros([1, 0])
    w, target = drawn_target(G, 7, c)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    distance = pixel_distance()
    opts = ProjectionOptions(num_steps=400, w_avg_samples=1000, optimize_noise=False)
    result = project(G, target, distance, opts, classes=classes)
    w_avg, _ = w_statistics(G, None if c_dim == 0 else 1, 1000, torch.device("cpu"))
    with torch.no_grad():
        start_image = to_distance_input(synthesize(G, w_avg[None]))
        start = squared_distance(distance.extract(target), distance.extract(start_image))
    assert float(result.distances[0]) < 1e-4 * float(start)  # the start is far; the end is the target
    assert float((result.ws[0, 0] - w[0]).norm()) < 0.01 * float(w.norm())
    assert result.ws.shape == (1, G.num_ws, G.w_dim) and torch.equal(result.ws[0, 0], result.ws[0, -1])
    if c_dim == 0:
        assert result.classes is None
    else:  # given, or fitted (the class whose mean image is nearest: either may be, w itself is free)
        assert result.classes == classes if classes else result.classes[0] in (0, 1)
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in before.items())  # the caller's network is unchanged


def test_a_batch_gets_one_w_per_target_and_noise_fitting_needs_one_target():
    G = small_generator(0)
    targets = torch.cat([drawn_target(G, seed, torch.zeros([1, 0]))[1] for seed in (1, 3)])
    result = project(
        G,
        targets,
        pixel_distance(),
        ProjectionOptions(num_steps=400, w_avg_samples=500, optimize_noise=False, keep_steps=True),
    )
    assert result.steps.shape == (400, 2, G.num_ws, G.w_dim)
    assert (result.distances < 1e-5).all()
    with pytest.raises(ValueError, match="single target"):
        project(G, targets, pixel_distance(), ProjectionOptions(num_steps=1))


def test_noise_fitting_runs_and_leaves_normalised_maps():
    G = small_generator(0)
    _, target = drawn_target(G, 3, torch.zeros([1, 0]))
    result = project(G, target, pixel_distance(), ProjectionOptions(num_steps=20, w_avg_samples=200))
    for name, buf in result.G.synthesis.named_buffers():
        if name.endswith("noise_const"):
            assert abs(float(buf.mean())) < 1e-5 and abs(float(buf.square().mean()) - 1) < 1e-4
            assert not buf.requires_grad


def test_learning_rate_schedule_ramps_up_and_down():
    opts = ProjectionOptions()
    assert learning_rate(opts, 0.0) == 0.0
    assert learning_rate(opts, 0.025) == pytest.approx(0.05)  # halfway up the 5% ramp
    assert learning_rate(opts, 0.5) == pytest.approx(0.1)
    assert learning_rate(opts, 0.875) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.5 * math.pi)))


def test_noise_regularization_is_zero_for_uncorrelated_and_positive_for_smooth_maps():
    checker = torch.tensor([[(i + j) % 2 * 2 - 1.0 for j in range(8)] for i in range(8)])  # shift-1 corr = -1
    assert float(noise_regularization({"a": checker})) == pytest.approx(2.0)
    smooth = torch.ones(8, 8)
    renormalize({"s": smooth.add_(torch.arange(8.0))})  # a ramp: normalised, still correlated
    assert float(noise_regularization({"s": smooth})) > 0.1
