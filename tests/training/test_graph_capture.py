"""Tests of training.graph_capture: on the CPU, that every phase in its capturable form stays on the device (the meta
device under forbid_host_access), that the switches keep the distributions and GraphedUpdate's bookkeeping (with
torch.cuda's graph API replaced by recorders); on a GPU, that a graphed phase gives the eager phase's gradients."""

import contextlib

import pytest
import torch

from torch_utils import training_stats
from torch_utils.host_access import HostAccessError, forbid_host_access
from training import graph_capture
from training.augment import AdaController, AugmentPipe, augpipe_specs
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator
from training.phase_update import GradientStep, PhaseRound, sanitize_gradients_
from training.training_loop import Nets, build_phases

PHASES = ["Gmain", "Greg", "Dmain", "Dreg"]


@pytest.fixture(autouse=True)
def own_statistics(monkeypatch):
    """The phases report statistics; meta-device sums must not reach the next test's collector."""
    monkeypatch.setattr(training_stats, "_pending", {})


def tiny_setup(device: str, lr: float = 0.0025, p: float = 0.5):
    """A 16x16 conditional G and D, the full augment pipe at strength p, ADA, R1 and path length, lazy phases."""
    G = Generator(
        z_dim=16,
        w_dim=16,
        c_dim=2,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=256),
    )
    D = Discriminator(
        c_dim=2,
        img_resolution=16,
        img_channels=1,
        channel_base=128,
        channel_max=16,
        epilogue_kwargs=dict(mbstd_group_size=2),
    )
    G, D = (net.train().requires_grad_(False).to(device) for net in (G, D))
    pipe = AugmentPipe(**augpipe_specs["bgcfnc"]).train().requires_grad_(False).to(device)
    pipe.p.fill_(p)
    ada = AdaController(target=0.6, batch_size=4)
    loss = StyleGAN2Loss(device, G, D, augment_pipe=pipe, r1_gamma=1.0, pl_weight=2.0, ada_controller=ada)
    opt_kwargs = dict(lr=lr, betas=[0, 0.99], eps=1e-8)
    phases = build_phases(
        Nets(G=G, D=D, G_ema=G, augment_pipe=pipe, ada=ada), loss, opt_kwargs, opt_kwargs, 2, 2, GradientStep()
    )
    assert [phase.name for phase in phases] == PHASES
    gen = torch.Generator().manual_seed(0)
    labels = torch.eye(2)[torch.tensor([0, 1, 1, 0])]
    rounds = [
        PhaseRound(
            torch.randn(4, 1, 16, 16, generator=gen).to(device),
            labels.to(device),
            torch.randn(4, 16, generator=gen).to(device),
            labels.flip(0).to(device),
        )
    ]
    return loss, phases, rounds


def accumulate(phase, loss, rounds) -> None:
    """A phase's whole device computation but Adam's step (which needs a CUDA device in its capturable form)."""
    phase.module.requires_grad_(True)
    try:
        for r in rounds:
            loss.accumulate_gradients(phase.name, r.real_img, r.real_c, r.gen_z, r.gen_c, gain=1.0)
    finally:
        phase.module.requires_grad_(False)
    sanitize_gradients_(list(phase.module.parameters()))


@pytest.mark.parametrize("name", PHASES)
def test_every_phase_in_its_capturable_form_stays_on_the_device(name):
    # Forward, backward, the R1 / path-length double backward, statistics and ADA's sums, on the meta device: any
    # host read, host RNG draw, host tensor or data-dependent shape raises.
    loss, phases, rounds = tiny_setup("meta")
    phase = next(p for p in graph_capture.make_capturable(phases, loss) if p.name == name)
    accumulate(phase, loss, rounds)  # warm-up: the caches of device constants, the statistics' pending sums
    with forbid_host_access():
        accumulate(phase, loss, rounds)
    assert all(p.grad is not None and p.grad.device.type == "meta" for p in phase.module.parameters())


@pytest.mark.parametrize("left_out, match", [("style_mixing", "makes a host tensor"), ("augment", "nonzero")])
def test_each_switch_is_needed(left_out, match):
    # The check has teeth: style mixing drawn on the host, or the augment pipe's per-subset form, is refused.
    loss, phases, rounds = tiny_setup("meta")
    loss.style_mixing_on_device = left_out != "style_mixing"
    loss.augment_pipe.fixed_shapes = left_out != "augment"
    phase = next(p for p in phases if p.name == "Dmain")  # runs G (style mixing) and the pipe
    if left_out == "style_mixing":  # warm-up (the pipe's device constants); the per-subset pipe cannot run on meta
        accumulate(phase, loss, rounds)
    with forbid_host_access(), pytest.raises(HostAccessError, match=match):
        accumulate(phase, loss, rounds)


def test_make_capturable_switches_the_forms_and_wraps_plain_steps():
    class OtherUpdate(GradientStep):  # an update rule of a plug-in (DP-SGD's, say): not captured
        pass

    loss, phases, _ = tiny_setup("cpu")
    phases[2].update = OtherUpdate()
    graphed = graph_capture.make_capturable(phases, loss)
    assert [p.name for p in graphed] == PHASES
    assert [type(p.update).__name__ for p in graphed] == [
        "GraphedUpdate",
        "GraphedUpdate",
        "OtherUpdate",
        "GraphedUpdate",
    ]
    assert graphed[0].update.pool is graphed[3].update.pool  # one memory pool for all graphs
    assert loss.augment_pipe.fixed_shapes and loss.style_mixing_on_device
    assert all(group["capturable"] for p in graphed for group in p.opt.param_groups)
    assert "CUDA graphs" in graph_capture.describe(True, torch.device("cuda"))
    assert graph_capture.describe(False, torch.device("cpu")) == "Phases: eager (cpu)"


# ----------------------------------------------------------------------------------------------------
# Style mixing on the device: the same draws (CPU), the same distribution.


class StubG:
    """mapping(z) repeats z num_ws times, synthesis is the identity: which rows of ws came from which latent."""

    num_ws = 6

    def mapping(self, z, c, skip_w_avg_update=False):
        return z[:, None, :].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, pose_z=None):
        return ws


def test_style_mixing_on_the_device_draws_as_on_the_host():
    # With certain mixing both forms consume the generator identically: the same ws, bit for bit.
    z, c = torch.randn(3, 4), torch.zeros(3, 0)
    results = []
    for on_device in (False, True):
        loss = StyleGAN2Loss("cpu", StubG(), None, style_mixing_prob=1.0)
        loss.style_mixing_on_device = on_device
        torch.manual_seed(1)
        results.append(loss.run_G(z, c)[1])
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], StubG().mapping(z, c))


def test_style_mixing_on_the_device_has_the_host_distribution():
    # P(mix) = 0.9 and, when mixing, a cutoff uniform on 1..num_ws - 1, as on the host. Binomial sampling error over
    # 4000 draws: std sqrt(0.09 / 4000) = 0.0047 for the rate (abs 0.02 is 4 sigma); each of the 5 cutoffs
    # expects 720 of the 3600 mixes, std sqrt(720 * 0.8) = 24 (abs 100 is 4 sigma).
    loss = StyleGAN2Loss("cpu", StubG(), None, style_mixing_prob=0.9)
    loss.style_mixing_on_device = True
    torch.manual_seed(0)
    z = torch.ones(1, 1)
    cutoffs = []
    for _ in range(4000):
        ws = loss.run_G(z, torch.zeros(1, 0))[1][0, :, 0]
        cutoffs.append(int((ws == 1).cumprod(0).sum()))  # leading rows from z (the mixed latent is never exactly 1)
    counts = torch.bincount(torch.tensor(cutoffs), minlength=7)
    assert counts[0] == 0
    assert counts[6].item() / 4000 == pytest.approx(0.1, abs=0.02)
    assert all(abs(n - 720) < 100 for n in counts[1:6].tolist())


# ----------------------------------------------------------------------------------------------------
# GPU: a graphed phase against the eager one.


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", PHASES)
def test_a_graphed_phase_gives_the_eager_gradients(name):
    # lr = 0 keeps the networks as they are, and pl_mean is reset before each call, so an eager call and a replay
    # from the same seed compute the same loss: their gradients agree up to the order of the device's atomic sums.
    loss, phases, rounds = tiny_setup("cuda", lr=0.0)
    phase = next(p for p in graph_capture.make_capturable(phases, loss) if p.name == name)
    graphed = phase.update
    for _ in range(graph_capture.WARMUP_CALLS + 1):
        graphed(phase, loss, rounds)
    assert graphed.graph is not None and graphed.failure is None

    def gradients(update, seed):
        loss.pl_mean.fill_(0.5)
        torch.manual_seed(seed)
        update(phase, loss, rounds)
        torch.cuda.synchronize()
        return [p.grad.clone() for p in phase.module.parameters()]

    for seed in (1, 2):
        expected = gradients(GradientStep(), seed)
        actual = gradients(graphed, seed)
        for e, a in zip(expected, actual):
            # float32 sums of a few thousand terms in a different order (atomics): relative to the largest gradient.
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * max(e.abs().max().item(), 1e-6))
    assert any(e.abs().sum() > 0 for e in expected)


# ----------------------------------------------------------------------------------------------------
# GraphedUpdate's bookkeeping on the CPU, with torch.cuda's graph API replaced by recorders.


class FakeCuda:
    """Stands in for the torch.cuda calls GraphedUpdate makes; records captures and replays."""

    def __init__(self, fail_capture: bool = False):
        self.fail_capture = fail_capture
        self.replays = 0
        self.captures = 0
        fake = self

        class Graph:
            def replay(self):
                fake.replays += 1

        @contextlib.contextmanager
        def graph(g, pool=None, capture_error_mode=None):
            fake.captures += 1
            yield
            if fake.fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing\nmore")

        class Stream:
            def wait_stream(self, other):
                pass

        self.patches = dict(
            CUDAGraph=Graph,
            graph=graph,
            Stream=Stream,
            stream=lambda s: contextlib.nullcontext(),
            current_stream=lambda: Stream(),
            synchronize=lambda: None,
            graph_pool_handle=lambda: ("pool",),
        )


class CountingStep(GradientStep):
    def __init__(self):
        self.rounds_seen = []

    def __call__(self, phase, loss, rounds):
        self.rounds_seen.append(rounds)
        for p in phase.module.parameters():
            p.grad = torch.full_like(p, float(len(self.rounds_seen)))


@pytest.mark.parametrize("fail_capture", [False, True])
def test_graphed_update_warms_up_captures_once_and_replays(monkeypatch, fail_capture, capsys):
    fake = FakeCuda(fail_capture)
    for name, value in fake.patches.items():
        monkeypatch.setattr(torch.cuda, name, value)
    loss, phases, rounds = tiny_setup("cpu")
    phase, inner = phases[0], CountingStep()
    update = graph_capture.GraphedUpdate(inner)
    calls = graph_capture.WARMUP_CALLS + 3
    for i in range(calls):
        new_rounds = [PhaseRound(r.real_img + i, r.real_c, r.gen_z + i, r.gen_c) for r in rounds]
        update(phase, loss, new_rounds)
        if not fail_capture and i >= graph_capture.WARMUP_CALLS:
            # The captured inputs hold this call's batch; the gradients are those the graph wrote at capture.
            assert torch.equal(update.static_rounds[0].gen_z, new_rounds[0].gen_z)
            assert all(
                torch.equal(p.grad, torch.full_like(p, graph_capture.WARMUP_CALLS + 1))
                for p in phase.module.parameters()
            )
    assert fake.captures == 1
    if fail_capture:  # every call after the failed capture runs eagerly, and the log says why once
        assert fake.replays == 0 and len(inner.rounds_seen) == calls + 1
        assert capsys.readouterr().out.count("capture failed (RuntimeError: operation not permitted") == 1
    else:  # warm-up calls, one call under capture, then replays only (the capture's call replays too)
        assert len(inner.rounds_seen) == graph_capture.WARMUP_CALLS + 1 and fake.replays == 3
        assert inner.rounds_seen[-1] is update.static_rounds
    short = [PhaseRound(r.real_img[:2], r.real_c[:2], r.gen_z[:2], r.gen_c[:2]) for r in rounds]
    update(phase, loss, short)  # another batch shape: eager, whatever the state
    assert inner.rounds_seen[-1] is short
