"""Declared-public reals in D's DP-SGD step: loading checks name the flag; draws are reproducible and uniform; the
step adds exactly the public images' real term (closed form against an independent autograd computation)."""

import copy

import pytest
import torch
from test_update import TinyDataset, make_nets, make_update, rounds_for  # the update's test rig
from tolerances import rounding_tol

from spine.dp.guards import DPConfigError
from spine.dp.mechanism import MechanismConfig
from spine.dp.public_reals import PublicReals, load_public_reals
from spine.dp.update import PRIVATE_SCOPES, private_parameter_names
from training.loss import StyleGAN2Loss
from training.phase_update import Phase


def test_load_keeps_images_and_one_hot_labels(image_folder):
    path = image_folder("public", n=5, res=32, labels=[0, 0, 1, 0, 1])
    public = load_public_reals(path, resolution=32, num_channels=1, c_dim=2)
    assert public.images.shape == (5, 1, 32, 32) and public.images.dtype == torch.uint8
    assert public.labels.tolist() == [[1, 0], [1, 0], [0, 1], [1, 0], [0, 1]]
    unconditional = load_public_reals(path, resolution=32, num_channels=1, c_dim=0)
    assert unconditional.labels.shape == (5, 0)


@pytest.mark.parametrize(
    "kwargs, c_dim, message",
    [
        (dict(res=16, labels=[0] * 4), 2, "16x16 images with 1 channel"),
        (dict(res=32), 2, "unlabelled dataset"),
        (dict(res=32, labels=[0, 1, 2, 0]), 2, "labels of 3 entries; the conditional D takes 2"),
    ],
)
def test_mismatched_public_images_are_refused_naming_the_flag(image_folder, kwargs, c_dim, message):
    path = image_folder("public", n=4, **kwargs)
    with pytest.raises(DPConfigError, match="--dp-public-reals=") as info:
        load_public_reals(path, resolution=32, num_channels=1, c_dim=c_dim)
    assert message in str(info.value)


def test_missing_public_images_are_refused_naming_the_flag(tmp_path):
    with pytest.raises(DPConfigError, match=r"--dp-public-reals=.*nothing"):
        load_public_reals(str(tmp_path / "nothing"), resolution=32, num_channels=1, c_dim=0)


def test_draws_are_seeded_and_cover_every_image():
    images = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    public = PublicReals(images, torch.eye(4))
    torch.manual_seed(3)
    first = public.draw(4000, torch.device("cpu"))
    torch.manual_seed(3)
    again = public.draw(4000, torch.device("cpu"))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    img, c = first
    index = c.argmax(1)
    assert torch.equal(img[:, 0, 0, 0], index.float() / 127.5 - 1)  # each label travels with its own image
    counts = torch.bincount(index, minlength=4).float()
    # Binomial(4000, 1/4): sd 27.4; 5 sd either side.
    assert ((counts - 1000).abs() < 5 * 27.4).all()


class GradientRecorder:
    """An optimiser stand-in that keeps the gradient of each step instead of applying it."""

    def __init__(self, params):
        self.params = list(params)
        self.grads = None

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads = [p.grad.clone() for p in self.params]


def step_gradients(update, G, D):
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=1.0, style_mixing_prob=0, pl_weight=0)
    assert loss.augment_pipe is None  # D sees the public image as drawn
    recorder = GradientRecorder(D.parameters())
    rounds = rounds_for(update)
    torch.manual_seed(7)
    update(Phase("Dboth", D, recorder, 1, update), loss, rounds)
    return recorder.grads


@pytest.mark.parametrize("r1_interval", [None, 1])
def test_the_step_adds_the_public_real_term(r1_interval):
    """Clip and noise off: the step with public images (weight w) has exactly w times the gradient of their real
    term (and R1, gamma/2 * interval = 0.5) more than the same step without them, against float64 autograd. One
    public image, so every draw is it."""
    dataset = TinyDataset()
    G, D = make_nets()
    stored = (torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 255).round().to(torch.uint8)
    c = torch.tensor([[0.0, 1.0]])
    weight = 0.7
    config = MechanismConfig(1.0, 1.0, clip=False, noise=False)
    update = make_update(dataset, config, r1_interval=r1_interval)
    update.public, update.public_weight = PublicReals(stored, c), weight
    with_public = step_gradients(update, G, D)
    without = step_gradients(make_update(dataset, config, r1_interval=r1_interval), G, D)

    D64 = copy.deepcopy(D).double().requires_grad_(True)
    img = (stored.double() / 127.5 - 1).requires_grad_(True)
    logits = D64(img, c.double())
    term = torch.nn.functional.softplus(-logits).sum()
    if r1_interval is not None:
        (grads,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
        term = term + 0.5 * grads.square().sum()
    term.backward()
    magnitude = max(g.abs().max().item() for g in with_public + without)
    tol = rounding_tol(torch.float32, 100, magnitude)
    for (name, p64), g_with, g_without in zip(D64.named_parameters(), with_public, without):
        assert torch.allclose((g_with - g_without).double(), weight * p64.grad, atol=tol, rtol=0), name
    assert max(p.grad.abs().max() for p in D64.parameters()) > 100 * tol  # a term the tolerance cannot hide


class OtherImages(TinyDataset):
    """The same labels, other private images."""

    def __init__(self):
        super().__init__()
        self.images = 255 - self.images


@pytest.mark.parametrize("scope", ["head", "epilogue", "input1-head"])
def test_a_private_scope_keeps_the_private_images_out_of_the_other_layers(scope):
    """With --dp-private-params, D's layers outside the scope get the same gradient (bit for bit) whatever the
    private images are: they read no private record. Inside the scope the private images (and the noise) arrive."""
    G, D = make_nets()
    public = PublicReals(torch.full([1, 1, 16, 16], 100, dtype=torch.uint8), torch.tensor([[1.0, 0.0]]))
    names = private_parameter_names(D, scope)
    assert names and len(names) < len(list(D.parameters()))
    steps = []
    for dataset in (TinyDataset(), OtherImages()):
        update = make_update(dataset, MechanismConfig(1.0, 1.0), r1_interval=1)
        update.public, update.private_scope = public, scope
        steps.append(dict(zip([n for n, _ in D.named_parameters()], step_gradients(update, G, D))))
    first, second = steps
    for name in first:
        if name in names:
            assert not torch.equal(first[name], second[name]), name
        else:
            assert torch.equal(first[name], second[name]), name


def test_private_scopes_name_the_head_and_the_input_blocks():
    """The 16x16 test D: blocks b16, b8 (from the input), then the epilogue b4; a conditional D's label mapping."""
    _, D = make_nets()
    assert D.block_resolutions == [16, 8]
    assert private_parameter_names(D, "all") is None
    scopes = [scope for scope in PRIVATE_SCOPES if scope != "all"]
    blocks = {scope: {name.split(".")[0] for name in private_parameter_names(D, scope)} for scope in scopes}
    assert blocks == {
        "epilogue": {"b4", "mapping"},
        "head": {"b4", "mapping"},
        "input1-head": {"b16", "b4", "mapping"},
        "input2-head": {"b16", "b8", "b4", "mapping"},
    }
    for scope in ("head", "input1-head", "input2-head"):
        b4 = {name for name in private_parameter_names(D, scope) if name.startswith("b4.")}
        assert b4 and all(name.startswith("b4.out.") for name in b4), scope  # the epilogue's conv and fc: clean
    everything = {name for name, _ in D.named_parameters()}
    assert private_parameter_names(D, "input2-head") | private_parameter_names(D, "epilogue") == everything


def test_private_scopes_are_checked():
    G, D = make_nets()
    assert private_parameter_names(D, "all") is None
    with pytest.raises(ValueError, match="--dp-private-params='last'"):
        private_parameter_names(D, "last")
    update = make_update(TinyDataset(), MechanismConfig(1.0, 1.0))
    with pytest.raises(ValueError, match="--dp-private-params=head needs public images"):
        type(update)(update.account, update.config, 6.0, r1_gamma=1.0, r1_interval=None, private_scope="head")


def test_the_private_weight_scales_the_private_term():
    """Clip and noise off: the step at private weight w has exactly (1 - w) times the private images' mean real-term
    gradient less than the step at weight 1, against float64 autograd over the six images (every one drawn, q = 1)."""
    dataset = TinyDataset()
    G, D = make_nets()
    public = PublicReals(torch.full([1, 1, 16, 16], 100, dtype=torch.uint8), torch.tensor([[1.0, 0.0]]))
    config = MechanismConfig(1.0, 1.0, clip=False, noise=False)
    steps = {}
    for weight in (1.0, 0.25):
        update = make_update(dataset, config)
        update.public, update.private_weight = public, weight
        steps[weight] = step_gradients(update, G, D)

    D64 = copy.deepcopy(D).double().requires_grad_(True)
    img = torch.from_numpy(dataset.images).double() / 127.5 - 1
    logits = D64(img, torch.from_numpy(dataset.labels).double())
    torch.nn.functional.softplus(-logits).sum().div(len(img)).backward()
    magnitude = max(g.abs().max().item() for g in steps[1.0])
    tol = rounding_tol(torch.float32, 100, magnitude)
    for (name, p64), g_one, g_quarter in zip(D64.named_parameters(), steps[1.0], steps[0.25]):
        assert torch.allclose((g_one - g_quarter).double(), 0.75 * p64.grad, atol=tol, rtol=0), name
    assert max(p.grad.abs().max() for p in D64.parameters()) > 100 * tol


def test_the_private_weight_scales_the_noise_too():
    """Clip and noise on, the same seeds: the step's private part (step minus the step at a tiny weight) halves
    with the weight, noise included, and differs from zero."""
    G, D = make_nets()
    public = PublicReals(torch.full([1, 1, 16, 16], 100, dtype=torch.uint8), torch.tensor([[1.0, 0.0]]))
    steps = {}
    for weight in (1.0, 0.5, 1e-30):
        update = make_update(TinyDataset(), MechanismConfig(1.0, 1.0))
        update.public, update.private_weight = public, weight
        steps[weight] = torch.cat([g.flatten() for g in step_gradients(update, G, D)])
    full, half = steps[1.0] - steps[1e-30], steps[0.5] - steps[1e-30]
    tol = rounding_tol(torch.float32, 100, full.abs().max().item())
    assert full.abs().max() > 100 * tol
    assert torch.allclose(half, 0.5 * full, atol=tol, rtol=0)


def test_the_private_weight_is_checked():
    update = make_update(TinyDataset(), MechanismConfig(1.0, 1.0))
    make = type(update)
    with pytest.raises(ValueError, match="--dp-private-weight=0.0: expected a positive weight"):
        make(update.account, update.config, 6.0, r1_gamma=1.0, r1_interval=None, private_weight=0.0)
    with pytest.raises(ValueError, match="--dp-private-weight=0.5 needs public images"):
        make(update.account, update.config, 6.0, r1_gamma=1.0, r1_interval=None, private_weight=0.5)
