"""Mode seeking: the inverse distance ratio of a generator whose ratio is known, its gradient, the pairs' shared
labels, how the loss attaches the term, and the --mode-seeking option."""

import pytest
import torch
from tolerances import rounding_tol
from torch import nn

import dnnlib
import train
from spine.diversity import options
from spine.diversity.mode_seeking import EPS, ModeSeeking
from training.loss import StyleGAN2Loss


class ScaledLatentGenerator(nn.Module):
    """image = `scale` * z laid out as a 1 x 2 x (z_dim / 2) image: |G(z1) - G(z2)| / |z1 - z2| is `scale`."""

    def __init__(self, c_dim: int = 2, z_dim: int = 6):
        super().__init__()
        self.z_dim, self.c_dim = z_dim, c_dim
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.calls: list[dict] = []

    def mapping(self, z, c, skip_w_avg_update=False):
        self.calls.append(dict(c=c.clone(), skip_w_avg_update=skip_w_avg_update))
        return z

    def synthesis(self, ws, pose_z=None, noise_mode="random"):
        self.calls[-1]["noise_mode"] = noise_mode
        return self.scale * ws.reshape(ws.shape[0], 1, 2, -1)


def test_loss_is_the_weight_over_the_known_ratio_for_every_sample():
    G = ScaledLatentGenerator()
    term = ModeSeeking(weight=2.0)
    term.attach(G)
    torch.manual_seed(0)
    loss = term(torch.zeros(8, 1, 2, 3), torch.zeros(8, 2))
    torch.testing.assert_close(loss, torch.full((8,), 2.0 / (0.5 + EPS)), rtol=rounding_tol(torch.float32, 8), atol=0)
    (call,) = G.calls  # one batched rendering of both latents of 2 pairs
    assert call["skip_w_avg_update"] and call["noise_mode"] == "const"
    loss.mean().backward()  # d/d scale of w / (scale + EPS) = -w / (scale + EPS)^2: a smaller spread costs more
    expected = torch.tensor(-2.0 / (0.5 + EPS) ** 2)
    torch.testing.assert_close(G.scale.grad, expected, rtol=rounding_tol(torch.float32, 8), atol=0)


def test_both_latents_of_a_pair_share_one_label_and_pairs_scale_with_the_batch():
    G = ScaledLatentGenerator(c_dim=5)
    term = ModeSeeking(weight=1.0, pairs_fraction=0.5)
    term.attach(G)
    torch.manual_seed(1)
    ratios = term.pair_ratios(200, torch.device("cpu"))
    torch.testing.assert_close(ratios, torch.full((200,), 0.5), rtol=rounding_tol(torch.float32, 8), atol=0)
    labels = G.calls[0]["c"].argmax(1)
    assert torch.equal(labels[:200], labels[200:]) and set(labels.tolist()) == {0, 1, 2, 3, 4}
    assert term(torch.zeros(6, 1, 2, 3), torch.zeros(6, 5)).shape == (6,) and G.calls[-1]["c"].shape == (6, 5)


def test_an_unconditional_generator_gets_empty_labels():
    G = ScaledLatentGenerator(c_dim=0)
    term = ModeSeeking(weight=1.0)
    term.attach(G)
    assert term.pair_ratios(3, torch.device("cpu")).shape == (3,) and G.calls[0]["c"].shape == (6, 0)


def test_refusals():
    with pytest.raises(ValueError, match="positive weight"):
        ModeSeeking(0.0)
    with pytest.raises(ValueError, match="pairs_fraction"):
        ModeSeeking(1.0, pairs_fraction=1.5)
    with pytest.raises(RuntimeError, match="attach"):
        ModeSeeking(1.0)(torch.zeros(2, 1, 2, 3), torch.zeros(2, 2))


def test_the_stylegan2_loss_attaches_the_generator_being_trained():
    G = ScaledLatentGenerator()
    term = ModeSeeking(1.0)
    StyleGAN2Loss(torch.device("cpu"), G, nn.Identity(), generator_terms=[term])
    assert term.G is G


def test_the_option_is_validated_named_in_the_run_and_built_into_the_term():
    assert "mode_seeking" in {param.name for param in train.main.params} and options.PLUGIN in train.PLUGINS
    args = dnnlib.EasyDict()
    assert options.configure(dnnlib.EasyDict(mode_seeking=None), args) == [] and args.mode_seeking is None
    assert options.build(args, torch.device("cpu")).generator_terms == ()
    assert options.configure(dnnlib.EasyDict(mode_seeking=1.0), args) == ["modeseek1"]
    (term,) = options.build(args, torch.device("cpu")).generator_terms
    assert isinstance(term, ModeSeeking) and term.snapshot_metadata()["mode_seeking"]["weight"] == 1.0
    with pytest.raises(ValueError, match="--mode-seeking=-1.0: expected a positive weight"):
        options.configure(dnnlib.EasyDict(mode_seeking=-1.0), args)
