"""Two gloo processes (env:// rendezvous) take the same optimiser step as one process with the whole batch."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from tolerances import rounding_tol

from training import distributed as dist_utils
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator
from training.phase_update import GradientStep, Phase, PhaseRound

N, RES = 8, 8


def make_setup():
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=RES,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8, use_noise=False),
    )  # noise = per-process RNG
    D = Discriminator(
        c_dim=2,
        img_resolution=RES,
        img_channels=1,
        channel_base=64,
        channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=2),
    )
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    real = torch.rand([N, 1, RES, RES], generator=g) * 2 - 1
    c = torch.nn.functional.one_hot(torch.arange(N) % 2, 2).float()
    z = torch.randn([N, 8], generator=g)
    return G, D, (real, c, z, c.flip(0))


def step_all_phases(rounds_of: callable) -> dict[str, torch.Tensor]:
    """Gmain, Dmain, Dreg steps through GradientStep; returns the final weights of G and D."""
    G, D, data = make_setup()
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=0, r1_gamma=2)
    update = GradientStep()
    for name, module in [("Gmain", G), ("Dmain", D), ("Dreg", D)]:
        opt = torch.optim.Adam(module.parameters(), lr=0.01, betas=(0.0, 0.99), eps=1e-8)
        update(Phase(name, module, opt, 1 if name != "Dreg" else 4, update), loss, rounds_of(data))
    return {f"G.{k}": v.clone() for k, v in G.state_dict().items()} | {
        f"D.{k}": v.clone() for k, v in D.state_dict().items()
    }


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    torch.set_num_threads(1)
    dist_utils.init_from_env(torch.device("cpu"))
    half = slice(rank * N // 2, (rank + 1) * N // 2)
    weights = step_all_phases(lambda data: [PhaseRound(*(t[half] for t in data))])
    if rank == 0:
        torch.save(weights, out)
    dist_utils.shutdown()
    with open(f"{out}.threads{rank}", "w") as f:
        f.write(" ".join(name for name in thread_names() if "gloo" in name or "tcpstore" in name))


def thread_names() -> list[str]:
    """Names of this process's threads (Linux); gloo's are gloo_tcp_loop and pt_gloo_runloop."""
    return [open(f"/proc/self/task/{tid}/comm").read().strip() for tid in os.listdir("/proc/self/task")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_whole_batch(tmp_path):
    out = str(tmp_path / "rank0.pt")
    mp.start_processes(worker, args=(free_port(), out), nprocs=2, start_method="spawn")
    two = torch.load(out, weights_only=True)
    # shutdown() really freed the process group: its threads left alive abort the process at exit (SIGABRT).
    assert [open(f"{out}.threads{rank}").read() for rank in (0, 1)] == ["", ""]
    # One process, the same batch in two accumulation rounds (same minibatch-std groups as the two processes),
    # on one thread like the workers: a different thread count changes float summation order beyond 1e-5.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = step_all_phases(
            lambda data: [PhaseRound(*(t[: N // 2] for t in data)), PhaseRound(*(t[N // 2 :] for t in data))]
        )
    finally:
        torch.set_num_threads(threads)
    changed = 0
    for key, value in one.items():
        if key.endswith("w_avg"):
            continue  # a per-process running mean of each process's own latents, as in the official code
        # Two processes sum the gradient in another order (an all-reduce of two halves) than one process (two
        # accumulation rounds), and Adam divides by sqrt(v): after 3 steps on these small nets the weights
        # differ by rounding through ~100-term sums, relative to the weights' size.
        torch.testing.assert_close(
            two[key], value, rtol=rounding_tol(torch.float32, 100), atol=rounding_tol(torch.float32, 100), msg=key
        )
        changed += not torch.equal(
            value, make_setup()[0 if key.startswith("G") else 1].state_dict()[key.split(".", 1)[1]]
        )
    assert changed > 10  # the steps really moved the weights
