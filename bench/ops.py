"""Time the reference ops on the layer shapes of a 256x256 StyleGAN2 (paper256: channel_base 16384).

Each op's reference path is compared with a naive zero-insertion implementation of the same op,
measured in the same run; on a CUDA device the CUDA plugins (impl='cuda') are timed against the
reference path too. Forward passes (with --backward: forward and the gradients of all inputs), median of
--reps runs after one warm-up.

    python bench/ops.py                  # CPU, batch 1
    python bench/ops.py --device cuda    # GPU, batch 8, plus impl='cuda' columns
    python bench/ops.py --backward       # forward + backward
    python bench/ops.py --library        # the reference path called directly vs through its torch.library op

--library measures what registering the reference path with torch.library would cost on a CPU: the same
computation called directly (what `bias_act` / `upfirdn2d` do on a CPU) and through the op `spinegan::*` whose CPU
kernel it is (dispatcher, schema parsing, and the autograd formula of the op instead of the reference's own).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import bias_act, conv2d_resample, upfirdn2d  # noqa: E402
from torch_utils.ops.bias_act_cuda import bias_act_op  # noqa: E402
from torch_utils.ops.upfirdn2d_cuda import upfirdn2d_op  # noqa: E402

RESOLUTIONS = (64, 128, 256)


def channels(res: int) -> int:
    """paper256 channel count at a resolution: min(16384 // res, 512)."""
    return min(16384 // res, 512)


# ----------------------------------------------------------------------------------------------------
# Naive baselines: the textbook construction, zero insertion and all.


def naive_upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, padding: int = 0, gain: float = 1
) -> torch.Tensor:
    """Zero-stuff, pad, full 2-D depthwise convolution, then subsample."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros([n, c, h * up, w * up])
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [padding] * 4 if isinstance(padding, int) else list(padding))
    f2 = (f if f.ndim == 2 else torch.outer(f, f)).flip([0, 1]) * gain
    x = F.conv2d(x, f2[None, None].repeat(c, 1, 1, 1).to(x.dtype), groups=c)
    return x[:, :, ::down, ::down]


def naive_conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int, down: int) -> torch.Tensor:
    """3x3 layer with padding 1: zero-insertion upsampling, or convolution then FIR then subsampling."""
    if up > 1:
        x = naive_upfirdn2d(x, f, up=up, padding=(3, 2, 3, 2), gain=up**2)  # 1 + FIR padding of upsample2d
        return F.conv2d(x, w)
    x = F.conv2d(F.pad(x, [2, 2, 2, 2]), w)  # 1 + FIR padding of downsample2d
    return naive_upfirdn2d(x, f, down=down)


def naive_bias_act(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x + b.reshape(1, -1, 1, 1), 0.2) * (2**0.5)


# ----------------------------------------------------------------------------------------------------
# Timing.


def assert_same_numbers(out: torch.Tensor, naive_out: torch.Tensor) -> None:
    """Same op, same numbers (float32 round-off): otherwise the timing comparison would be meaningless."""
    torch.testing.assert_close(out, naive_out, rtol=1e-4, atol=1e-4 * naive_out.abs().max().item())


def with_backward(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """fn's forward and the backward of its sum (the gradients of every input that requires grad)."""

    def forward_backward() -> torch.Tensor:
        out = fn()
        out.sum().backward()
        return out

    return forward_backward


def time_ms(fn: Callable[[], torch.Tensor], device: torch.device, reps: int) -> float:
    """Median wall time of fn() in milliseconds (after one warm-up call)."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def ops_impl(impl: str) -> Iterator[None]:
    """Force every op (also those called inside conv2d_resample) to `impl` via SPINEGAN_OPS_IMPL."""
    previous = os.environ.get(custom_ops.IMPL_ENV_VAR)
    os.environ[custom_ops.IMPL_ENV_VAR] = impl
    try:
        yield
    finally:
        if previous is None:
            del os.environ[custom_ops.IMPL_ENV_VAR]
        else:
            os.environ[custom_ops.IMPL_ENV_VAR] = previous


def benchmark_cases(
    batch: int, device: torch.device, requires_grad: bool = False
) -> list[tuple[str, str, Callable, Callable]]:
    """(op, shape, fast fn, naive fn) for every op at every resolution; inputs require grad if asked."""
    gen = torch.Generator(device=device).manual_seed(0)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, generator=gen).requires_grad_(requires_grad)

    cases = []
    for res in RESOLUTIONS:
        c, c_hi = channels(res), channels(res // 2)
        x = randn(batch, c, res, res)
        x_half = randn(batch, c, res // 2, res // 2)
        x_g = randn(batch, c_hi, res // 2, res // 2)
        w_g = randn(c, c_hi, 3, 3)
        w_d = randn(c_hi, c, 3, 3)
        b = randn(c)
        shape = f"{batch}x{c}x{res}x{res}"
        cases += [
            (
                "upfirdn2d up2",
                f"{batch}x{c}x{res // 2}x{res // 2}",
                lambda x=x_half: upfirdn2d.upsample2d(x, f),
                lambda x=x_half: naive_upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4),
            ),
            (
                "upfirdn2d down2",
                shape,
                lambda x=x: upfirdn2d.downsample2d(x, f),
                lambda x=x: naive_upfirdn2d(x, f, down=2, padding=1),
            ),
            (
                "upfirdn2d filter",
                shape,
                lambda x=x: upfirdn2d.filter2d(x, f),
                lambda x=x: naive_upfirdn2d(x, f, padding=(2, 1, 2, 1)),
            ),
            (
                "conv2d_resample up",
                f"{batch}x{c_hi}x{res // 2}x{res // 2}->{c}",
                lambda x=x_g, w=w_g: conv2d_resample.conv2d_resample(x, w, f, up=2, padding=1),
                lambda x=x_g, w=w_g: naive_conv2d_resample(x, w, f, 2, 1),
            ),
            (
                "conv2d_resample down",
                f"{shape}->{c_hi}",
                lambda x=x, w=w_d: conv2d_resample.conv2d_resample(x, w, f, down=2, padding=1),
                lambda x=x, w=w_d: naive_conv2d_resample(x, w, f, 1, 2),
            ),
            (
                "bias_act lrelu",
                shape,
                lambda x=x, b=b: bias_act.bias_act(x, b, act="lrelu"),
                lambda x=x, b=b: naive_bias_act(x, b),
            ),
        ]
    return cases


def library_cases(
    batch: int, device: torch.device, requires_grad: bool = False
) -> list[tuple[str, str, Callable, Callable]]:
    """(op, shape, direct reference call, the same through the torch.library op) at every resolution."""
    gen = torch.Generator(device=device).manual_seed(0)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    cases = []
    for res in RESOLUTIONS:
        c = channels(res)
        x = torch.randn(batch, c, res, res, device=device, generator=gen).requires_grad_(requires_grad)
        b = torch.randn(c, device=device, generator=gen).requires_grad_(requires_grad)
        shape = f"{batch}x{c}x{res}x{res}"
        cases += [
            (
                "upfirdn2d up2",
                shape,
                lambda x=x: upfirdn2d.upsample2d(x, f, impl="ref"),
                lambda x=x: upfirdn2d_op(x, f, [2, 2], [1, 1], [2, 1, 2, 1], False, 4.0),
            ),
            (
                "upfirdn2d down2",
                shape,
                lambda x=x: upfirdn2d.downsample2d(x, f, impl="ref"),
                lambda x=x: upfirdn2d_op(x, f, [1, 1], [2, 2], [1, 1, 1, 1], False, 1.0),
            ),
            (
                "bias_act lrelu",
                shape,
                lambda x=x, b=b: bias_act.bias_act(x, b, act="lrelu", impl="ref"),
                lambda x=x, b=b: bias_act_op(x, b, None, 0, "lrelu", 0.2, 2**0.5, -1.0, 1),
            ),
        ]
    return cases


def print_library_overhead(batch: int, device: torch.device, reps: int, backward: bool) -> None:
    """The reference path called directly vs through its torch.library op, same numbers asserted."""
    header = f"{'op':<22}{'shape':<26}{'direct ms':>10}{'op ms':>10}{'op/direct':>10}"
    print(header)
    print("-" * len(header))
    timed = with_backward if backward else (lambda fn: fn)
    with torch.set_grad_enabled(backward):
        for op, shape, direct_fn, op_fn in library_cases(batch, device, requires_grad=backward):
            assert_same_numbers(op_fn().detach(), direct_fn().detach())
            direct_ms = time_ms(timed(direct_fn), device, reps)
            op_ms = time_ms(timed(op_fn), device, reps)
            print(f"{op:<22}{shape:<26}{direct_ms:>10.2f}{op_ms:>10.2f}{op_ms / direct_ms:>10.2f}", flush=True)


@click.command()
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda")
@click.option("--batch", type=int, default=None, help="batch size [default: 1 on CPU, 8 on CUDA]")
@click.option("--reps", type=int, default=None, help="timed runs per measurement [default: 3 on CPU, 25 on CUDA]")
@click.option("--backward", is_flag=True, help="time forward + backward (gradients of all inputs) instead")
@click.option("--library", is_flag=True, help="time the reference path directly vs through its torch.library op")
def main(device: str, batch: int | None, reps: int | None, backward: bool, library: bool) -> None:
    """Print reference vs naive (and CUDA) timings of the ops."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine", param_hint="--device")
    on_cuda = device.type == "cuda"
    batch = batch or (8 if on_cuda else 1)
    reps = reps or (25 if on_cuda else 3)
    if on_cuda:  # As in training (--allow-tf32 defaults to false): TF32 convolutions would miss the 1e-4 check.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    header = f"{'op':<22}{'shape':<26}{'ref ms':>10}{'naive ms':>10}{'naive/ref':>10}"
    if on_cuda:
        header += f"{'cuda ms':>10}{'ref/cuda':>10}"
    print(
        f"torch {torch.__version__}, device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if on_cuda else ''}, threads {torch.get_num_threads()}, "
        f"{'forward + backward' if backward else 'forward'}"
    )
    if library:
        print_library_overhead(batch, device, reps, backward)
        return
    print(header)
    print("-" * len(header))
    timed = with_backward if backward else (lambda fn: fn)
    with torch.set_grad_enabled(backward):
        for op, shape, fast_fn, naive_fn in benchmark_cases(batch, device, requires_grad=backward):
            naive_out = naive_fn().detach()
            with ops_impl("ref"):
                assert_same_numbers(fast_fn().detach(), naive_out)
                ref_ms = time_ms(timed(fast_fn), device, reps)
            naive_ms = time_ms(timed(naive_fn), device, reps)
            line = f"{op:<22}{shape:<26}{ref_ms:>10.2f}{naive_ms:>10.2f}{naive_ms / ref_ms:>10.2f}"
            if on_cuda:
                with ops_impl("cuda"):
                    assert_same_numbers(fast_fn().detach(), naive_out)
                    cuda_ms = time_ms(timed(fast_fn), device, reps)
                line += f"{cuda_ms:>10.2f}{ref_ms / cuda_ms:>10.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
