"""Class locality: the paired L1 of a generator with a known class effect, its gradient, how the loss attaches the
term to the generator being trained, and the --class-locality option."""

import os

import pytest
import torch
from test_clinical_training import invoke, write_dataset
from tolerances import rounding_tol
from torch import nn

import train
from spine.clinical.locality import ClassLocality
from training.loss import StyleGAN2Loss


class ClassOffsetGenerator(nn.Module):
    """ws = [z, class index]; image = tanh-free pattern of z plus `offset` times the class index on `mask`."""

    def __init__(self, mask: torch.Tensor, c_dim: int = 2, z_dim: int = 3):
        super().__init__()
        self.z_dim, self.c_dim = z_dim, c_dim
        self.offset = nn.Parameter(torch.tensor(0.25))
        self.register_buffer("mask", mask)
        self.calls: list[dict] = []

    def mapping(self, z, c, skip_w_avg_update=False):
        self.calls.append(dict(skip_w_avg_update=skip_w_avg_update))
        return torch.cat([z, c.argmax(1, keepdim=True).float()], dim=1)

    def synthesis(self, ws, pose_z=None, noise_mode="random"):
        self.calls[-1]["noise_mode"] = noise_mode
        pattern = ws[:, :1, None, None] * torch.linspace(-1, 1, self.mask.numel()).reshape(1, 1, *self.mask.shape)
        return pattern + self.offset * ws[:, -1, None, None, None] * self.mask


def test_loss_is_the_mean_absolute_class_effect_for_every_sample():
    mask = torch.zeros(4, 4)
    mask[1, 2] = mask[3, 0] = 1.0  # the class changes 2 of 16 pixels by 0.25 per class step
    G = ClassOffsetGenerator(mask)
    term = ClassLocality(weight=3.0)
    term.attach(G)
    torch.manual_seed(0)
    loss = term(torch.zeros(8, 1, 4, 4), torch.zeros(8, 2))
    # Two classes: c' is always the other one, so every pair differs by 0.25 on 2 of 16 pixels.
    expected = torch.full((8,), 3.0 * 0.25 * 2 / 16)
    torch.testing.assert_close(loss, expected, rtol=0, atol=rounding_tol(torch.float32, 32))
    assert G.calls == [dict(skip_w_avg_update=True, noise_mode="const")]  # one batched rendering of 2 pairs
    loss.mean().backward()
    torch.testing.assert_close(G.offset.grad, torch.tensor(3.0 * 2 / 16), rtol=0, atol=rounding_tol(torch.float32, 32))


def test_a_concave_power_charges_a_faint_spread_change_more_than_l1_does():
    mask = torch.zeros(4, 4)
    mask[1, 2] = mask[3, 0] = 1.0
    G = ClassOffsetGenerator(mask)
    term = ClassLocality(weight=1.0, power=0.5)
    term.attach(G)
    gap = term.pair_differences(3, torch.device("cpu"))
    expected = ((0.25 + 0.01) ** 0.5 - 0.01**0.5) * 2 / 16  # unchanged pixels cost nothing
    torch.testing.assert_close(gap, torch.full((3,), expected), rtol=0, atol=rounding_tol(torch.float32, 32))
    spread = ClassOffsetGenerator(torch.full((4, 4), 2 / 16))  # the same L1, spread over every pixel
    spread.offset.data.fill_(0.25)
    term.attach(spread)
    assert float(term.pair_differences(3, torch.device("cpu"))[0].detach()) > 1.5 * expected


def test_a_relative_charge_is_the_class_effect_over_the_pair_contrast_and_ignores_fading():
    mask = torch.zeros(4, 4)
    mask[1, 2] = mask[3, 0] = 1.0
    G = ClassOffsetGenerator(mask)
    term = ClassLocality(weight=1.0, relative=True)
    term.attach(G)
    torch.manual_seed(2)
    gap = term.pair_differences(5, torch.device("cpu"))
    # Recompute the pairs' renderings (the same draws) and each image's mean absolute deviation, in float64.
    torch.manual_seed(2)
    z = torch.randn(5, G.z_dim).double()
    c = torch.randint(2, [5])
    other = (c + torch.randint(1, 2, [5])) % 2
    ramp = torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(1, 4, 4)
    images = [z[:, :1, None] * ramp + 0.25 * k[:, None, None].double() * mask.double() for k in (c, other)]
    mad = [(x - x.mean((1, 2), keepdim=True)).abs().mean((1, 2)) for x in images]
    expected = (0.25 * 2 / 16) / ((mad[0] + mad[1]) / 2).clamp(min=0.01)
    torch.testing.assert_close(gap.double(), expected, rtol=rounding_tol(torch.float32, 16), atol=0)
    # Every image at a tenth of its contrast (pattern and class effect alike): the relative charge is unchanged.
    faded = ClassOffsetGenerator(mask)
    faded.synthesis = lambda ws, pose_z=None, noise_mode="random": G.synthesis(ws, pose_z, noise_mode) / 10
    term.attach(faded)
    torch.manual_seed(2)
    torch.testing.assert_close(term.pair_differences(5, torch.device("cpu")), gap, rtol=1e-5, atol=0)


def test_pairs_never_repeat_a_class_and_scale_with_the_batch():
    G = ClassOffsetGenerator(torch.ones(2, 2), c_dim=5)
    term = ClassLocality(weight=1.0, pairs_fraction=0.5)
    term.attach(G)
    torch.manual_seed(1)
    gap = term.pair_differences(200, torch.device("cpu"))
    # |class index difference| * 0.25 on every pixel: 0 would mean c' == c.
    steps = (gap / 0.25).detach()
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-5)
    assert set(steps.round().int().tolist()) == {1, 2, 3, 4}
    assert term(torch.zeros(6, 1, 2, 2), torch.zeros(6, 5)).shape == (6,)


def test_refusals():
    with pytest.raises(ValueError, match="positive weight"):
        ClassLocality(0.0)
    with pytest.raises(ValueError, match="power"):
        ClassLocality(1.0, power=1.5)
    with pytest.raises(ValueError, match="pairs_fraction"):
        ClassLocality(1.0, pairs_fraction=0.0)
    with pytest.raises(RuntimeError, match="attach"):
        ClassLocality(1.0)(torch.zeros(2, 1, 2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="c_dim=1"):
        ClassLocality(1.0).attach(ClassOffsetGenerator(torch.ones(2, 2), c_dim=1))


def test_the_stylegan2_loss_attaches_the_generator_being_trained():
    G = ClassOffsetGenerator(torch.ones(2, 2))
    term = ClassLocality(1.0)
    StyleGAN2Loss(torch.device("cpu"), G, nn.Identity(), generator_terms=[term])
    assert term.G is G


def test_class_locality_option_is_recorded_and_reaches_the_loss(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke(tmp_path, data, "--class-locality", "0.5")
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert os.path.basename(args.run_dir).endswith("-locality0.5") and args.class_locality == dict(
        weight=0.5, power=1, relative=False
    )
    assert "class_locality" not in train.loop_kwargs(args)
    (term,) = train.build_plugins(args, "cpu").generator_terms
    assert isinstance(term, ClassLocality) and term.weight == 0.5 and term.power == 1
    result = invoke(tmp_path, data, "--class-locality", "2", "--class-locality-power", "0.5")
    assert result.exit_code == 0, result.output
    assert os.path.basename(captured[1].run_dir).endswith("-locality2-p0.5")
    (term,) = train.build_plugins(captured[1], "cpu").generator_terms
    assert term.weight == 2 and term.power == 0.5 and not term.relative
    result = invoke(tmp_path, data, "--class-locality", "1", "--class-locality-relative", "1")
    assert result.exit_code == 0, result.output
    assert os.path.basename(captured[2].run_dir).endswith("-locality1-rel")
    (term,) = train.build_plugins(captured[2], "cpu").generator_terms
    assert term.relative and term.snapshot_metadata()["class_locality"]["relative"] is True


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--class-locality", "0"], "--class-locality=0.0: expected a positive weight"),
        (["--class-locality", "1", "--cond", "0"], "--class-locality needs a conditional run"),
        (["--class-locality-power", "0.5"], "--class-locality-power needs --class-locality"),
        (["--class-locality-relative", "1"], "--class-locality-relative needs --class-locality"),
        (["--class-locality", "1", "--class-locality-power", "2"], "expected a power in (0, 1]"),
    ],
)
def test_bad_class_locality_is_refused_before_training(tmp_path, captured, extra, message):
    result = invoke(tmp_path, write_dataset(str(tmp_path / "ds")), *extra)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not captured
