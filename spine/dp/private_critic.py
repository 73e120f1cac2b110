"""A small private critic: the one network that reads the private images (train.py --dp-private-critic=CHANNELS).

DP-SGD's noise collapsed G wherever it entered the demo's D (326k weights; docs/RESULTS.md R-W): its signal-to-noise
ratio per coordinate is about B / (sigma sqrt(d)) for d noised weights, so a network of a few thousand weights has
ten times the ratio. With a private critic D_p the private images train only D_p, by the same mechanism as before
(`spine.dp.update`: Poisson sampling, per-sample clipping, Gaussian noise, one step of the account per D step);
D reads only the fakes and the declared-public images, without noise. G's loss adds `weight` times
softplus(-D_p(G(z, c), c)) (this module's generator term) to D's adversarial term.

D_p: 3x3 convolutions with leaky ReLU (slope 0.2), 2x average pooling between them; its head is linear over every
position of the last feature map (a mean over positions scores a finding anywhere the same, and G then drew it in
one place, docs/RESULTS.md X), plus a projection of the label onto the same features (conditional). Its optimiser
is Adam with momentum 0.9 (StyleGAN2's D has none): the momentum averages the noise over about ten steps. D_p, its
optimiser state and G's use of it are post-processing of the noised gradients: no further privacy cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from training.plugins import Plugin

FLAG = "--dp-private-critic"
LEARNING_RATE = 0.002
BETAS = (0.9, 0.99)
TERM_NAME = "private_critic"


def parse_channels(text: str, img_resolution: int) -> tuple[int, ...]:
    """'8,16,16' -> (8, 16, 16): one 3x3 convolution per entry, pooled 2x between them; refuses a list that pools
    the image below 1 pixel, naming the flag."""
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1:
        raise ValueError(f"{FLAG}={text}: expected comma-separated positive channel counts, e.g. 8,16,16")
    if img_resolution >> (len(channels) - 1) < 1:
        raise ValueError(f"{FLAG}={text}: {len(channels)} layers pool a {img_resolution}-pixel image below 1 pixel")
    return channels


class PrivateCritic(torch.nn.Module):
    """D_p(img [N, C, H, W], c [N, c_dim]) -> logits [N, 1] (see the module docstring)."""

    def __init__(self, img_resolution: int, img_channels: int, c_dim: int, channels: Sequence[int]):
        super().__init__()
        inputs = [img_channels, *channels[:-1]]
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(a, b, 3, padding=1) for a, b in zip(inputs, channels))
        self.positions = (img_resolution >> (len(channels) - 1)) ** 2
        features = channels[-1] * self.positions
        self.out = torch.nn.Linear(features, 1)
        self.embed = torch.nn.Linear(c_dim, features, bias=False) if c_dim > 0 else None

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = img
        for index, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), 0.2)
            if index < len(self.convs) - 1:
                x = F.avg_pool2d(x, 2)
        # Divided by sqrt(positions): a head over every position starts at the scale of one over their mean.
        features = x.flatten(1) / self.positions**0.5
        logits = self.out(features)
        if self.embed is not None:
            logits = logits + (self.embed(c) * features).sum(1, keepdim=True)
        return logits


class PrivateCriticTerm(Plugin):
    """G's term `weight` * softplus(-D_p(G(z, c), c)) per sample; holds D_p and its optimiser, both checkpointed
    (a resumed run continues D_p's training exactly). `spine.dp.update` trains D_p in every D step."""

    name = TERM_NAME

    def __init__(self, critic: PrivateCritic, weight: float):
        if not weight > 0:
            raise ValueError(f"--dp-critic-weight={weight}: expected a positive weight")
        self.critic = critic.requires_grad_(False)  # G's phase differentiates through D_p, never into it
        self.weight = float(weight)
        self.optimizer = torch.optim.Adam(critic.parameters(), lr=LEARNING_RATE, betas=BETAS)

    def __call__(self, gen_img: torch.Tensor, gen_c: torch.Tensor) -> torch.Tensor:
        return self.weight * F.softplus(-self.critic(gen_img, gen_c)).flatten()

    def state_dict(self) -> dict:
        return dict(critic=self.critic.state_dict(), optimizer=self.optimizer.state_dict())

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:
            raise ValueError(f"the checkpoint holds no {FLAG} state: it was written by a run without one")
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
