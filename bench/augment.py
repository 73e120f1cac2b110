"""Time the augment pipe's two forms (training.augment: per-subset with host reads, and fixed shapes) on the CPU.

Forward and the R1-style double backward (the gradient of the augmented batch's sum w.r.t. the input with
create_graph, then the backward of its square), per batch, median of --reps runs after one warm-up, at several
strengths p, in one run so that the ratios compare like with like. `--baseline FILE` adds the columns of another
version of training/augment.py (e.g. `git show eedf8b8:training/augment.py > /tmp/augment_base.py`).

    python bench/augment.py [--res 32] [--batch 16] [--channels 1] [--augpipe bgc] [--baseline FILE]
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout
from training.augment import AugmentPipe, augpipe_specs  # noqa: E402

STRENGTHS = (0.0, 0.2, 0.5, 1.0)


def load_pipe_class(path: str) -> type:
    """AugmentPipe from another version of training/augment.py."""
    spec = importlib.util.spec_from_file_location("augment_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.AugmentPipe


def forward_and_r1(pipe: torch.nn.Module, x: torch.Tensor) -> None:
    img = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(pipe(img).square().sum(), img, create_graph=True)
    grad.square().sum().backward()


def time_ms(fn: Callable[[], None], reps: int, seed: int = 0) -> float:
    """Median wall time of fn() in ms after a warm-up; the same seed before each run (the same draws)."""
    torch.manual_seed(seed)
    fn()
    times = []
    for _ in range(reps):
        torch.manual_seed(seed)
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@click.command()
@click.option("--res", type=int, default=32, show_default=True)
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--augpipe", type=click.Choice(sorted(augpipe_specs)), default="bgc", show_default=True)
@click.option("--reps", type=int, default=5, show_default=True)
@click.option(
    "--baseline",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="another version of training/augment.py to time alongside",
)
def main(res: int, batch: int, channels: str, augpipe: str, reps: int, baseline: str | None) -> None:
    """Print forward and forward+R1 times of each form at each p."""
    x = torch.randn(batch, int(channels), res, res, generator=torch.Generator().manual_seed(0))
    forms: dict[str, torch.nn.Module] = {}
    if baseline is not None:
        forms["baseline"] = load_pipe_class(baseline)(**augpipe_specs[augpipe])
    forms["subset"] = AugmentPipe(**augpipe_specs[augpipe])
    forms["fixed"] = AugmentPipe(**augpipe_specs[augpipe])
    forms["fixed"].fixed_shapes = True
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, augpipe {augpipe}, "
        f"{batch}x{channels}x{res}x{res}, median of {reps}"
    )
    header = f"{'pass':<10}{'p':>5}" + "".join(f"{name + ' ms':>14}" for name in forms)
    header += "".join(f"{name + '/subset':>16}" for name in forms if name != "subset")
    print(header)
    print("-" * len(header))
    for label, step in (("forward", lambda pipe: pipe(x)), ("fwd+R1", lambda pipe: forward_and_r1(pipe, x))):
        for p in STRENGTHS:
            times = {}
            for name, pipe in forms.items():
                pipe.p.fill_(p)
                with torch.set_grad_enabled(label != "forward"):
                    times[name] = time_ms(lambda pipe=pipe: step(pipe), reps)
            line = f"{label:<10}{p:>5.1f}" + "".join(f"{t:>14.2f}" for t in times.values())
            line += "".join(f"{t / times['subset']:>16.2f}" for name, t in times.items() if name != "subset")
            print(line, flush=True)


if __name__ == "__main__":
    main()
