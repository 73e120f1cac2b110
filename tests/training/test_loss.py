"""StyleGAN2Loss: phase routing, R1 against brute-force references, generator terms, path-length EMA."""

import pytest
import torch
from tolerances import rounding_tol

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator

RES = 8


def fresh_collector(regex: str) -> training_stats.Collector:
    """A collector that ignores what earlier tests reported (the first update() drains it)."""
    collector = training_stats.Collector(regex=regex)
    collector.update()
    return collector


def tiny_nets(c_dim: int = 2) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=RES,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )
    D = Discriminator(
        c_dim=c_dim,
        img_resolution=RES,
        img_channels=1,
        channel_base=64,
        channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=2),
    )
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def batch(n: int = 4, c_dim: int = 2):
    g = torch.Generator().manual_seed(1)
    real = torch.rand([n, 1, RES, RES], generator=g) * 2 - 1
    c = torch.nn.functional.one_hot(torch.arange(n) % c_dim, c_dim).float()
    z = torch.randn([n, 8], generator=g)
    return real, c, z, c.flip(0)


@pytest.mark.parametrize(
    "phase, trained", [("Gmain", "G"), ("Greg", "G"), ("Gboth", "G"), ("Dmain", "D"), ("Dreg", "D"), ("Dboth", "D")]
)
def test_phase_gradients_reach_only_the_trained_network(phase, trained):
    G, D = tiny_nets()
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=1, pl_weight=2)
    nets = dict(G=G, D=D)
    nets[trained].requires_grad_(True)
    loss.accumulate_gradients(phase, *batch(), gain=1)
    other = D if trained == "G" else G
    grads = [p.grad for p in nets[trained].parameters() if p.grad is not None]
    assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in other.parameters())


def test_unknown_phase_is_refused():
    G, D = tiny_nets()
    with pytest.raises(ValueError, match="unknown loss phase"):
        StyleGAN2Loss("cpu", G, D).accumulate_gradients("Gfoo", *batch(), gain=1)


class QuadraticD(torch.nn.Module):
    """D(x) = a * sum(x^2): R1 = sum((2 a x)^2) in closed form."""

    def __init__(self, a: float):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, img, c):
        return (self.a * img.square()).sum([1, 2, 3]).unsqueeze(1)


class Double(torch.nn.Module):
    """A stand-in augmentation aug(x) = 2x, so the R1 input (un-augmented) is distinguishable."""

    def forward(self, img):
        return img * 2


def test_r1_is_taken_through_the_augmentation_wrt_unaugmented_reals():
    real = torch.randn([3, 1, 4, 4], dtype=torch.float64)
    D = QuadraticD(0.3)
    loss = StyleGAN2Loss("cpu", None, D, augment_pipe=Double(), r1_gamma=4)
    got = loss.discriminator_real_loss(real, torch.zeros([3, 0]), main=False, r1=True)
    # D(aug(x)) = 4 a sum x^2 -> d/dx = 8 a x -> R1 = sum (8 a x)^2; loss = gamma / 2 * R1.
    expected = 2 * (8 * 0.3 * real).square().sum([1, 2, 3])
    # float64 double backward against the closed form: 16-term sums of squares (positive terms, so relative).
    torch.testing.assert_close(got, expected, rtol=rounding_tol(torch.float64, 32), atol=0)


class TinyConvD(torch.nn.Module):
    """A small float64 conv discriminator using conv2d_gradfix, so no_weight_gradients is exercised."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w1 = torch.nn.Parameter(torch.randn([3, 1, 3, 3], generator=g, dtype=torch.float64) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn([1, 3, 3, 3], generator=g, dtype=torch.float64) * 0.5)

    def forward(self, img, c):
        x = torch.nn.functional.softplus(conv2d_gradfix.conv2d(img, self.w1, padding=1))
        x = conv2d_gradfix.conv2d(x, self.w2, padding=1)
        return x.square().mean([1, 2, 3]).unsqueeze(1)


def r1_by_finite_differences(D: torch.nn.Module, real: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """sum over pixels of (dD/dx)^2 per sample, each derivative by central differences."""
    grads = torch.zeros_like(real)
    flat = real.clone().flatten(1)
    for j in range(flat.shape[1]):
        plus, minus = flat.clone(), flat.clone()
        plus[:, j] += eps
        minus[:, j] -= eps
        with torch.no_grad():
            diff = D(plus.view_as(real), None) - D(minus.view_as(real), None)
        grads.view(real.shape[0], -1)[:, j] = diff.flatten() / (2 * eps)
    return grads.square().sum([1, 2, 3])


def test_r1_penalty_and_its_weight_gradient_match_brute_force():
    torch.manual_seed(0)
    D = TinyConvD()
    real = torch.randn([2, 1, 5, 5], dtype=torch.float64)
    gamma = 3.0
    loss = StyleGAN2Loss("cpu", None, D, r1_gamma=gamma)
    collector = fresh_collector("Loss/r1_penalty")
    r1_loss = loss.discriminator_real_loss(real, None, main=False, r1=True)
    collector.update()
    reference = r1_by_finite_differences(D, real)
    # Central differences with step h = 1e-6 in float64: truncation O(h^2) ~ 1e-12 and rounding ~ eps / h ~ 2e-10
    # relative on each derivative, far inside rel=1e-6 (which still tells a wrong factor or a missed term).
    torch.testing.assert_close(r1_loss, reference * gamma / 2, rtol=1e-6, atol=1e-9)
    assert collector.mean("Loss/r1_penalty") == pytest.approx(float(reference.mean()), rel=1e-6)

    # Weight gradient of the R1 loss (computed under no_weight_gradients) vs plain double autograd.
    r1_loss.mean().backward()
    ours = [D.w1.grad.clone(), D.w2.grad.clone()]
    D.zero_grad()
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, None).sum(), x, create_graph=True)
    (g.square().sum([1, 2, 3]) * gamma / 2).mean().backward()
    # Two float64 autograd paths through 27-term convs (different kernels: gradfix vs plain autograd).
    for a, b in zip(ours, (D.w1.grad, D.w2.grad)):
        torch.testing.assert_close(a, b, rtol=rounding_tol(torch.float64, 1000), atol=rounding_tol(torch.float64, 1000))


class MeanBrightness:
    """A generator term: weight * mean pixel value, per sample."""

    name = "bright"

    def __init__(self, weight: float):
        self.weight = weight

    def __call__(self, gen_img, gen_c):
        return gen_img.mean([1, 2, 3]) * self.weight


def gmain_grads(terms) -> list[torch.Tensor]:
    G, D = tiny_nets()
    G.requires_grad_(True)
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=0, generator_terms=terms)
    torch.manual_seed(5)
    loss.accumulate_gradients("Gmain", *batch(), gain=1)
    return [p.grad.clone() for p in G.parameters()]


def test_generator_term_adds_its_gradient_and_is_reported():
    collector = fresh_collector("Loss/G/.*")
    base = gmain_grads([])
    with_term = gmain_grads([MeanBrightness(0.7)])
    collector.update()
    assert "Loss/G/bright" in collector.names() and "Loss/G/loss" in collector.names()
    # Reference gradient of the term alone: 0.7 * d mean(G(z, c)) / d theta.
    G, _ = tiny_nets()
    G.requires_grad_(True)
    torch.manual_seed(5)
    real, c, z, gen_c = batch()
    img = G.synthesis(G.mapping(z, gen_c))
    (img.mean([1, 2, 3]) * 0.7).mean().backward()
    for b, t, p in zip(base, with_term, G.parameters()):
        # float32 gradients through the tiny G and D (chains of ~1000 roundings); their difference cancels, so the
        # error scales with the gradients' size, not the difference's.
        scale = max(t.abs().max().item(), b.abs().max().item(), 1e-30)
        torch.testing.assert_close(t - b, p.grad, rtol=0, atol=rounding_tol(torch.float32, 1000, scale))


def test_generator_term_with_wrong_shape_is_refused():
    G, D = tiny_nets()
    G.requires_grad_(True)

    class Scalar:
        name = "bad"

        def __call__(self, gen_img, gen_c):
            return gen_img.mean()

    loss = StyleGAN2Loss("cpu", G, D, generator_terms=[Scalar()])
    with pytest.raises(ValueError, match="generator term 'bad'"):
        loss.accumulate_gradients("Gmain", *batch(), gain=1)


def test_path_length_mean_is_an_ema_of_batch_lengths():
    G, D = tiny_nets()
    G.requires_grad_(True)
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=0, pl_decay=0.25, pl_batch_shrink=2)
    collector = fresh_collector("Loss/pl_penalty")
    real, c, z, gen_c = batch(n=4)
    torch.manual_seed(9)
    loss.accumulate_gradients("Greg", real, c, z, gen_c, gain=1)
    first = float(loss.pl_mean)
    assert first > 0
    collector.update()
    assert collector.num("Loss/pl_penalty") == 2  # N / pl_batch_shrink samples
    # Same noise again (no optimiser step in between): the batch length L is unchanged, first = 0.25 L and
    # second = lerp(first, L, 0.25) = 1.75 first.
    torch.manual_seed(9)
    loss.accumulate_gradients("Greg", real, c, z, gen_c, gain=1)
    # float32: the same batch length (a mean of 2 norms of a float32 gradient) and a lerp; the two
    # evaluations of L agree to the rounding of the G backward (~1000 chained operations).
    assert float(loss.pl_mean) == pytest.approx(1.75 * first, rel=rounding_tol(torch.float32, 1000))


class RecordingTerm:
    """A zero generator term that keeps the labels and images it was given."""

    name = "record"

    def __call__(self, gen_img, gen_c):
        self.seen = (gen_img.detach().clone(), gen_c.clone())
        return gen_img.mean([1, 2, 3]) * 0


def test_adversarial_class_has_d_judge_only_that_class_renders():
    """With adversarial_class=0, D's fake term and G's adversarial term score G(z, one-hot 0), while the generator
    terms see G(z, c) with the batch's own labels: against the same renders made by hand (same noise draws)."""
    G, D = tiny_nets()
    _, _, z, gen_c = batch()
    assert gen_c[:, 1].any()  # the batch holds class 1 too
    first = torch.nn.functional.one_hot(torch.zeros(len(z), dtype=torch.int64), 2).float()
    term = RecordingTerm()
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=0, generator_terms=[term], adversarial_class=0)

    def render(c):
        return G.synthesis(G.mapping(z, c))

    with torch.no_grad():
        torch.manual_seed(3)
        fake = loss.discriminator_fake_loss(z, gen_c)
        torch.manual_seed(3)
        expected_fake = torch.nn.functional.softplus(D(render(first), first)).flatten()
        torch.manual_seed(4)
        main = loss.generator_main_loss(z, gen_c)
        torch.manual_seed(4)
        own = render(gen_c)
        expected_main = torch.nn.functional.softplus(-D(render(first), first)).flatten()
    assert torch.equal(fake, expected_fake) and torch.equal(main, expected_main)
    assert torch.equal(term.seen[0], own) and torch.equal(term.seen[1], gen_c)
    assert not torch.equal(own, render(first))  # the classes render differently: the test can tell them apart
