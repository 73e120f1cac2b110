"""The private critic: its flag's parsing, its forward pass against a float64 computation by hand, its term and
state; and in the DP step, D's gradient reads no private image while the critic's is the closed-form DP-SGD one."""

import copy

import pytest
import torch
import torch.nn.functional as F
from test_public_reals import GradientRecorder, OtherImages, step_gradients  # the update's test rigs
from test_update import TinyDataset, make_nets, make_update, rounds_for
from tolerances import rounding_tol

from spine.dp.mechanism import MechanismConfig
from spine.dp.private_critic import PrivateCritic, PrivateCriticTerm, parse_channels
from spine.dp.public_reals import PublicReals
from training.loss import StyleGAN2Loss
from training.phase_update import Phase


def test_channels_are_parsed_and_checked():
    assert parse_channels("8,16,16", 32) == (8, 16, 16)
    assert parse_channels("4", 16) == (4,)
    for bad in ("", "8,x", "8,0", "-1"):
        with pytest.raises(ValueError, match="--dp-private-critic=.*comma-separated positive"):
            parse_channels(bad, 32)
    with pytest.raises(ValueError, match="7 layers pool a 32-pixel image below 1 pixel"):
        parse_channels("1,1,1,1,1,1,1", 32)


def by_hand(critic: PrivateCritic, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The critic's logits in float64 from its weights: convolutions, leaky ReLU, 2x pooling, a linear head over
    every position (scaled by 1 / sqrt(positions)) and the label's projection onto the same features."""
    x = img.double()
    for index, conv in enumerate(critic.convs):
        x = F.conv2d(x, conv.weight.double(), conv.bias.double(), padding=1)
        x = torch.where(x > 0, x, 0.2 * x)
        if index < len(critic.convs) - 1:
            x = (x[:, :, 0::2, 0::2] + x[:, :, 1::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 1::2]) / 4
    features = x.flatten(1) / (x.shape[2] * x.shape[3]) ** 0.5
    logits = features @ critic.out.weight.double().T + critic.out.bias.double()
    return logits + ((c.double() @ critic.embed.weight.double().T) * features).sum(1, keepdim=True)


def test_forward_matches_a_computation_by_hand():
    torch.manual_seed(0)
    critic = PrivateCritic(16, 1, 2, (3, 4, 5))
    img = torch.rand(5, 1, 16, 16) * 2 - 1
    c = torch.eye(2)[torch.tensor([0, 1, 1, 0, 1])]
    logits = critic(img, c)
    assert logits.shape == (5, 1) and critic.positions == 16
    expected = by_hand(critic, img, c)
    tol = rounding_tol(torch.float32, 200, expected.abs().max().item())
    assert torch.allclose(logits.double(), expected, atol=tol, rtol=0)
    with torch.no_grad():
        critic.embed.weight.mul_(10)  # the label matters: the classes score differently
    assert not torch.allclose(critic(img, c), critic(img, c.flip(1)))


def test_an_unconditional_critic_ignores_the_label():
    torch.manual_seed(0)
    critic = PrivateCritic(16, 1, 0, (2, 2))
    img = torch.rand(3, 1, 16, 16)
    assert critic.embed is None and critic(img, torch.zeros(3, 0)).shape == (3, 1)


def test_the_term_is_its_weight_times_softplus_and_keeps_its_state():
    torch.manual_seed(0)
    term = PrivateCriticTerm(PrivateCritic(16, 1, 2, (2, 2)), weight=0.5)
    img, c = torch.rand(4, 1, 16, 16), torch.eye(2)[torch.tensor([0, 1, 0, 1])]
    assert torch.allclose(term(img, c), 0.5 * F.softplus(-term.critic(img, c)).flatten())
    assert not any(p.requires_grad for p in term.critic.parameters())  # G's phase never trains it
    term.critic.requires_grad_(True)
    term(img, c).sum().backward()
    term.optimizer.step()
    state = copy.deepcopy(term.state_dict())
    again = PrivateCriticTerm(PrivateCritic(16, 1, 2, (2, 2)), weight=0.5)
    again.load_state_dict(state)
    for key, value in state["critic"].items():
        assert torch.equal(again.critic.state_dict()[key], value), key
    assert again.optimizer.state_dict()["state"][0]["step"] == 1
    with pytest.raises(ValueError, match="holds no --dp-private-critic state"):
        again.load_state_dict(None)
    with pytest.raises(ValueError, match="--dp-critic-weight=0.0: expected a positive weight"):
        PrivateCriticTerm(PrivateCritic(16, 1, 2, (2,)), weight=0.0)


def critic_update(dataset, config, critic_term):
    update = make_update(dataset, config)
    update.public = PublicReals(torch.full([1, 1, 16, 16], 100, dtype=torch.uint8), torch.tensor([[1.0, 0.0]]))
    update.critic = critic_term
    return update


def fresh_term() -> PrivateCriticTerm:
    torch.manual_seed(1)
    return PrivateCriticTerm(PrivateCritic(16, 1, 2, (2, 3)), weight=1.0)


def test_d_reads_no_private_image_when_a_critic_takes_the_private_term():
    """Clip and noise on: D's gradient is the same, bit for bit, for two different private sets; the critic's
    weights are not."""
    G, D = make_nets()
    d_grads, critics = [], []
    for dataset in (TinyDataset(), OtherImages()):
        term = fresh_term()
        d_grads.append(step_gradients(critic_update(dataset, MechanismConfig(1.0, 1.0), term), G, D))
        critics.append(term.critic.state_dict())
    for first, second in zip(*d_grads):
        assert torch.equal(first, second)
    assert any(not torch.equal(critics[0][key], critics[1][key]) for key in critics[0])


def test_the_critic_step_is_its_fake_term_plus_the_private_mean():
    """Clip and noise off, every image drawn (q = 1): the critic's gradient is the batch mean of softplus(D_p(fake))
    over the rendered fakes plus the mean of softplus(-D_p(x_i)) over the six private images, against float64
    autograd on the same fakes."""
    G, D = make_nets()
    dataset = TinyDataset()
    term = fresh_term()
    update = critic_update(dataset, MechanismConfig(1.0, 1.0, clip=False, noise=False), term)
    term.optimizer = GradientRecorder(term.critic.parameters())
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=1.0, style_mixing_prob=0, pl_weight=0)
    rounds = rounds_for(update)
    critic64 = copy.deepcopy(term.critic).double().requires_grad_(True)
    torch.manual_seed(7)
    update(Phase("Dboth", D, torch.optim.SGD(D.parameters(), lr=0.0), 1, update), loss, rounds)

    r = rounds[0]
    with torch.no_grad():
        fakes = G(r.gen_z, r.gen_c)  # no style mixing, noise strengths start at 0: the renders of the step
    real = torch.from_numpy(dataset.images).double() / 127.5 - 1
    real_c = torch.from_numpy(dataset.labels).double()
    total = F.softplus(critic64(fakes.double(), r.gen_c.double())).mean()
    total = total + F.softplus(-critic64(real, real_c)).sum() / len(real)
    total.backward()
    tol = rounding_tol(torch.float32, 200, max(p.grad.abs().max().item() for p in critic64.parameters()))
    for (name, p64), g in zip(critic64.named_parameters(), term.optimizer.grads):
        assert torch.allclose(g.double(), p64.grad, atol=tol, rtol=0), name
    assert max(p.grad.abs().max() for p in critic64.parameters()) > 100 * tol


def test_a_critic_needs_public_images_and_all_of_the_private_term():
    update = make_update(TinyDataset(), MechanismConfig(1.0, 1.0))
    with pytest.raises(ValueError, match="--dp-private-critic needs public images"):
        type(update)(update.account, update.config, 6.0, r1_gamma=1.0, r1_interval=None, critic=fresh_term())
    public = PublicReals(torch.full([1, 1, 16, 16], 100, dtype=torch.uint8), torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="--dp-private-params and --dp-private-critic both"):
        type(update)(
            update.account, update.config, 6.0, 1.0, None, public=public, private_scope="head", critic=fresh_term()
        )
