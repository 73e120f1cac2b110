"""Benchmark one training iteration: seconds per kimg, and the fraction of the machine's float32 matmul rate.

Configurations:
  demo      the `--cfg=demo` preset of train.py (32x32 grayscale, 2 classes).
  official  grayscale 64x64, c_dim 2, batch 16, channel_base 4096, 2 mapping layers, ADA p=0.2 with the bgc pipe,
            the full schedule (Gmain; Greg every 4; Dmain; Dreg every 16). NVIDIA's code needs about 11.5 s per
            iteration (720 s/kimg) for it on a 2-core AVX2 machine (docs/PERFORMANCE.md).

Each phase is timed on its own (after a warm-up pass) and combined with the schedule:
iteration = Gmain + Greg / 4 + Dmain + Dreg / 16 (+ the EMA update). The float32 matmul rate is measured between
the timed repeats, so that on a loaded machine the official figures can be scaled to the same rate. FLOPs of the
main phases come from PyTorch's FLOP counter; the regularisation phases are not counted. The counter's figure
for the official code's Gmain (584 GFLOP) is about 4x ours (~150) for the same network because that run used the
fused (grouped) modulated convolution, whose weight gradient the counter overcounts by the batch size
(16 x ~29 GFLOP); counted ops otherwise agree (Dmain ~212 both).

    python bench/train_step.py [--config demo|official|both] [--repeats 2] [--dp] [--clinical] [--bf16] [--batch N]
                               [--fp32-batch N]
                               [--bias-act]

--bf16 adds, per configuration, each phase timed in fp32 (as --fp32=1) and with the bf16 blocks (what a CPU with
native bf16 runs; torch_utils.precision), alternated, and the iteration's ratio in kimg per minute. Goal: 1.7x.
--batch N replaces the configurations' batch size (16): the per-iteration cost that does not grow with the batch
(Python, dispatch, small ops) shows as the difference between batch sizes. --fp32-batch N times the fp32 arm at its own
batch size (default: the bf16 arm's), so that a preset that moves to a larger batch with bf16 is compared with the
fp32 kimg per minute of the preset it replaces; the ratio is then one of kimg per minute, not of iterations.

--bias-act adds, per configuration, the iteration with bias_act on its CPU kernel (torch_utils/ops/bias_act_cpu.cpp,
what a CPU run takes by default) against the reference path (SPINEGAN_OPS_IMPL=ref), in fp32 and with the bf16 blocks,
the four arms alternated: the time it saves, and the bf16 / fp32 ratio with each.

--dp adds the DP-SGD comparison at the demo preset (spine.dp): one iteration with the standard D phases
(Dmain + Dreg / 16) against one with the private D step (per-sample gradients, lazy R1 inside every 16th step,
clipping, noise; minibatch-std off, Poisson batch of the same expected size). Goal: at most 3x.

--clinical times the Gmain phase at the demo preset with and without the clinical loss term (spine.clinical.loss,
weight 0.1) judged by a freshly initialised small_cnn SpineClassifier at the generator's resolution (weights do not
change the cost), and prints the overhead per iteration. Goal: under 15%.
"""

from __future__ import annotations

import copy
import os
import sys
import time

import click
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from torch_utils import custom_ops, precision
from training.augment import AugmentPipe, augpipe_specs
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator
from training.phase_update import GradientStep, Phase, PhaseRound
from training.training_loop import make_adam, update_ema

CONFIGS = {
    "demo": dict(
        res=32,
        batch=16,
        channel_base=1024,
        channel_max=64,
        z_dim=128,
        map=2,
        mbstd=4,
        p=0.2,
        pl_weight=0,
        r1_gamma=0.05,
    ),
    "official": dict(
        res=64,
        batch=16,
        channel_base=4096,
        channel_max=512,
        z_dim=512,
        map=2,
        mbstd=4,
        p=0.2,
        pl_weight=2,
        r1_gamma=0.4096,
    ),
}
INTERVALS = dict(Gmain=1, Greg=4, Dmain=1, Dreg=16)


def matmul_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    """Dense float32 matrix-product rate of this machine, in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def build(cfg: dict, fp32: bool = False) -> tuple[StyleGAN2Loss, dict[str, Phase], torch.nn.Module, list[PhaseRound]]:
    """The networks, loss and phases of a configuration; `fp32` as train.py's --fp32=1 (no reduced-precision
    blocks), else num_fp16_res=4 with conv_clamp=256 (bf16 on a CPU with native bf16, see torch_utils.precision)."""
    torch.manual_seed(0)
    mixed = dict(num_fp16_res=0, conv_clamp=None) if fp32 else dict(num_fp16_res=4, conv_clamp=256)
    G = Generator(
        z_dim=cfg["z_dim"],
        c_dim=2,
        w_dim=cfg["z_dim"],
        img_resolution=cfg["res"],
        img_channels=1,
        mapping_kwargs=dict(num_layers=cfg["map"]),
        synthesis_kwargs=dict(channel_base=cfg["channel_base"], channel_max=cfg["channel_max"], **mixed),
    )
    D = Discriminator(
        c_dim=2,
        img_resolution=cfg["res"],
        img_channels=1,
        channel_base=cfg["channel_base"],
        channel_max=cfg["channel_max"],
        epilogue_kwargs=dict(mbstd_group_size=cfg["mbstd"]),
        **mixed,
    )
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    pipe = AugmentPipe(**augpipe_specs["bgc"]).train().requires_grad_(False)
    pipe.p.fill_(cfg["p"])
    loss = StyleGAN2Loss("cpu", G, D, augment_pipe=pipe, r1_gamma=cfg["r1_gamma"], pl_weight=cfg["pl_weight"])
    update = GradientStep()
    phases = {}
    for name, module, reg in [("G", G, 4), ("D", D, 16)]:
        ratio = reg / (reg + 1)
        opt = make_adam(module, dict(lr=0.0025 * ratio, betas=(0.0, 0.99**ratio), eps=1e-8))
        phases[name + "main"] = Phase(name + "main", module, opt, 1, update)
        phases[name + "reg"] = Phase(name + "reg", module, opt, reg, update)
    n = cfg["batch"]
    c = torch.nn.functional.one_hot(torch.arange(n) % 2, 2).float()
    rounds = [PhaseRound(torch.rand(n, 1, cfg["res"], cfg["res"]) * 2 - 1, c, torch.randn(n, cfg["z_dim"]), c)]
    return loss, phases, G_ema, rounds


def time_phase(phase: Phase, loss: StyleGAN2Loss, rounds: list[PhaseRound], repeats: int) -> tuple[float, float]:
    """Median seconds of one phase step, and the matmul rate measured between the repeats (same load)."""
    phase.update(phase, loss, rounds)  # warm-up
    times, rates = [], []
    for _ in range(repeats):
        rates.append(matmul_gflops(seconds=0.5))
        start = time.perf_counter()
        phase.update(phase, loss, rounds)
        times.append(time.perf_counter() - start)
    rates.append(matmul_gflops(seconds=0.5))
    return float(np.median(times)), float(np.median(rates))


def count_gflop(phase: Phase, loss: StyleGAN2Loss, rounds: list[PhaseRound]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        phase.update(phase, loss, rounds)
    return counter.get_total_flops() / 1e9


# The official code's figures for the `official` configuration on a quiet 2-core AVX2 machine whose float32
# matmul rate is 130-160 GFLOP/s (docs/PERFORMANCE.md): per-phase seconds and seconds per iteration.
OFFICIAL_SECONDS = dict(Gmain=6.3, Greg=9.4, Dmain=4.1, Dreg=3.1)
OFFICIAL_ITERATION = 11.5
OFFICIAL_MATMUL_GFLOPS = 145.0


def bench(name: str, repeats: int) -> None:
    """Per-phase table; on a loaded machine, compare the official figures scaled by the measured matmul rate."""
    cfg = CONFIGS[name]
    loss, phases, G_ema, rounds = build(cfg)
    active = [p for p in phases if not (p == "Greg" and cfg["pl_weight"] == 0)]
    timed = {p: time_phase(phases[p], loss, rounds, repeats) for p in active}
    t = {p: timed[p][0] for p in active}
    start = time.perf_counter()
    update_ema(phases["Gmain"].module, G_ema, 10_000, cfg["batch"], 10, None)
    t_ema = time.perf_counter() - start
    per_iter = sum(t[p] / INTERVALS[p] for p in active) + t_ema
    rate = float(np.median([timed[p][1] for p in active]))
    gflop = {p: count_gflop(phases[p], loss, rounds) for p in ("Gmain", "Dmain")}
    print(
        f"[{name}] phase   seconds  matmul GFLOP/s  GFLOP  achieved GFLOP/s (fraction of matmul)"
        + ("  official (scaled to this matmul rate)" if name == "official" else "")
    )
    for p in active:
        line = f"[{name}] {p:6s} {t[p]:8.2f} {timed[p][1]:15.0f}"
        if p in gflop:
            achieved = gflop[p] / t[p]
            line += f" {gflop[p]:6.0f} {achieved:10.1f} ({achieved / timed[p][1]:.0%})"
        else:
            line += " " * 27
        if name == "official":
            line += f"  {OFFICIAL_SECONDS[p] * OFFICIAL_MATMUL_GFLOPS / timed[p][1]:8.2f}"
        print(line)
    print(
        f"[{name}] {per_iter:.2f} s/iteration (EMA {t_ema:.3f} s) = {per_iter * 1000 / cfg['batch']:.1f} s/kimg"
        f" at a matmul rate of {rate:.0f} GFLOP/s"
    )
    if name == "official":
        scaled = OFFICIAL_ITERATION * OFFICIAL_MATMUL_GFLOPS / rate
        print(
            f"[{name}] official code {OFFICIAL_ITERATION} s/iteration at {OFFICIAL_MATMUL_GFLOPS:.0f} GFLOP/s"
            f" -> {scaled:.2f} s at {rate:.0f} GFLOP/s; speed-up {scaled / per_iter:.2f}x (goal >= 1.5x)"
        )


# ---------------------------------------------------------------------------------------------------------------
# bf16 blocks vs fp32 (torch_utils.precision), side by side.


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def time_alternated(
    arms: dict[str, tuple[tuple, str | None]], active: list[str], repeats: int
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]]]:
    """Wall-clock and CPU seconds of each phase step per arm, the arms alternated repeat by repeat so that a shared
    machine's load hits all alike; the first round is a warm-up. An arm is a `build` result and the ops'
    implementation it forces ($SPINEGAN_OPS_IMPL; None: as the environment says)."""
    wall: dict[tuple[str, str], list[float]] = {(a, p): [] for a in arms for p in active}
    cpu: dict[tuple[str, str], list[float]] = {(a, p): [] for a in arms for p in active}
    saved = os.environ.get(custom_ops.IMPL_ENV_VAR)
    try:
        for i in range(repeats + 1):
            for arm, ((loss, phases, _, rounds), impl) in arms.items():
                os.environ[custom_ops.IMPL_ENV_VAR] = impl or saved or "auto"
                for p in active:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    phases[p].update(phases[p], loss, rounds)
                    if i > 0:
                        wall[arm, p].append(time.perf_counter() - start)
                        cpu[arm, p].append(time.process_time() - start_cpu)
    finally:
        if saved is None:
            os.environ.pop(custom_ops.IMPL_ENV_VAR, None)
        else:
            os.environ[custom_ops.IMPL_ENV_VAR] = saved
    return wall, cpu


def bench_precision(name: str, repeats: int, batch: int | None = None, fp32_batch: int | None = None) -> None:
    """Each phase in fp32 (--fp32=1) and with the bf16 blocks, alternated repeat by repeat so that a shared machine's
    load hits both alike; medians of wall-clock seconds and, less sensitive to other processes, of this process's
    CPU seconds. NVIDIA's code is not run here: its figures are the stored ones, scaled by the matmul rate."""
    cfg = dict(CONFIGS[name], **(dict(batch=batch) if batch else {}))
    batches = {"fp32": fp32_batch or cfg["batch"], "bf16": cfg["batch"]}
    setups = {"fp32": build(dict(cfg, batch=batches["fp32"]), fp32=True), "bf16": build(cfg)}
    active = [p for p in INTERVALS if not (p == "Greg" and cfg["pl_weight"] == 0)]
    rate = matmul_gflops(seconds=0.5)
    wall, cpu = time_alternated({mode: (setup, None) for mode, setup in setups.items()}, active, repeats)
    rate = (rate + matmul_gflops(seconds=0.5)) / 2
    loss, phases, G_ema, _ = setups["fp32"]
    start = time.perf_counter()
    update_ema(phases["Gmain"].module, G_ema, 10_000, cfg["batch"], 10, None)
    t_ema = time.perf_counter() - start

    def iteration(times: dict[tuple[str, str], list[float]], mode: str) -> float:
        return sum(float(np.median(times[mode, p])) / INTERVALS[p] for p in active) + t_ema

    # Per image, so that arms at different batch sizes compare (the plain time ratio when the batches are equal).
    batch_ratio = batches["bf16"] / batches["fp32"]
    sizes = f"batch {cfg['batch']}" if batch_ratio == 1 else f"batch fp32 {batches['fp32']}, bf16 {batches['bf16']}"
    print(
        f"[{name} bf16] {sizes}; phase   fp32 s   bf16 s  fp32/bf16 per image  (wall-clock medians of {repeats} "
        "alternated repeats)"
    )
    for p in active:
        t32, t16 = float(np.median(wall["fp32", p])), float(np.median(wall["bf16", p]))
        print(f"[{name} bf16] {p:6s} {t32:8.3f} {t16:8.3f} {t32 / t16 * batch_ratio:9.2f}x")
    it32, it16 = iteration(wall, "fp32"), iteration(wall, "bf16")
    kimg_min = {m: batches[m] / 1000 / t * 60 for m, t in (("fp32", it32), ("bf16", it16))}
    print(
        f"[{name} bf16] iteration {it32:.3f} s fp32 ({kimg_min['fp32']:.2f} kimg/min), {it16:.3f} s bf16 "
        f"({kimg_min['bf16']:.2f} kimg/min): {kimg_min['bf16'] / kimg_min['fp32']:.2f}x kimg/min (goal >= 1.7x); "
        f"by CPU seconds {iteration(cpu, 'fp32') / iteration(cpu, 'bf16') * batch_ratio:.2f}x"
    )
    if name == "official":
        scaled = OFFICIAL_ITERATION * OFFICIAL_MATMUL_GFLOPS / rate
        print(
            f"[{name} bf16] official code {OFFICIAL_ITERATION} s/iteration at {OFFICIAL_MATMUL_GFLOPS:.0f} GFLOP/s"
            f" -> {scaled:.2f} s at this run's {rate:.0f} GFLOP/s: fp32 {scaled / it32:.2f}x, bf16 "
            f"{scaled / it16:.2f}x faster (goal >= 5x)"
        )


def bench_bias_act(name: str, repeats: int) -> None:
    """Each phase with bias_act on its CPU kernel and on the reference path, in fp32 (--fp32=1) and with the bf16
    blocks, the four arms alternated: what the kernel saves per iteration, and the bf16 / fp32 ratio with each."""
    cfg = CONFIGS[name]
    setups = {"fp32": build(cfg, fp32=True), "bf16": build(cfg)}
    active = [p for p in INTERVALS if not (p == "Greg" and cfg["pl_weight"] == 0)]
    arms = {f"{mode} {impl}": (setups[mode], impl) for impl in ("ref", "cpu") for mode in setups}
    wall, cpu = time_alternated(arms, active, repeats)

    def iteration(times: dict[tuple[str, str], list[float]], arm: str) -> float:
        return sum(float(np.median(times[arm, p])) / INTERVALS[p] for p in active)

    print(
        f"[{name} bias_act] arm       wall s   CPU s  (iteration without the EMA; medians of {repeats} alternated "
        "repeats)"
    )
    for arm in arms:
        print(f"[{name} bias_act] {arm:9s} {iteration(wall, arm):7.3f} {iteration(cpu, arm):7.3f}")
    for times, what in ((wall, "wall"), (cpu, "CPU")):
        saved = {m: 1 - iteration(times, f"{m} cpu") / iteration(times, f"{m} ref") for m in setups}
        ratio = {i: iteration(times, f"fp32 {i}") / iteration(times, f"bf16 {i}") for i in ("ref", "cpu")}
        print(
            f"[{name} bias_act] by {what} seconds: the CPU kernel saves {saved['fp32']:.1%} (fp32), "
            f"{saved['bf16']:.1%} (bf16); bf16 / fp32 {ratio['ref']:.2f}x on the reference path, "
            f"{ratio['cpu']:.2f}x on the kernel (goal >= 1.7x)"
        )


# ---------------------------------------------------------------------------------------------------------------
# DP-SGD vs the standard discriminator step (spine.dp), demo preset.


def bench_dp(repeats: int) -> None:
    from spine.dp.accounting import PrivacyAccount
    from spine.dp.mechanism import MechanismConfig
    from spine.dp.sampling import PoissonSampling
    from spine.dp.update import DPDiscriminatorUpdate

    cfg = CONFIGS["demo"]
    loss, phases, _, rounds = build(cfg)
    t_G = time_phase(phases["Gmain"], loss, rounds, repeats)[0]
    t_D = (
        time_phase(phases["Dmain"], loss, rounds, repeats)[0]
        + time_phase(phases["Dreg"], loss, rounds, repeats)[0] / 16
    )
    torch.manual_seed(0)
    D = (
        Discriminator(
            c_dim=2,
            img_resolution=cfg["res"],
            img_channels=1,
            channel_base=cfg["channel_base"],
            channel_max=cfg["channel_max"],
            num_fp16_res=4,
            conv_clamp=256,
            epilogue_kwargs=dict(mbstd_num_channels=0),
        )
        .train()
        .requires_grad_(False)
    )
    loss.D = D
    account = PrivacyAccount(noise_multiplier=1.0, sample_rate=1 / 8, delta=1e-5, accountant="rdp")
    sampling = PoissonSampling("image", account.sample_rate, 8 * cfg["batch"])  # expected batch: cfg["batch"]
    update = DPDiscriminatorUpdate(
        account, MechanismConfig(1.0, 1.0), sampling.expected_batch_size, r1_gamma=cfg["r1_gamma"], r1_interval=16
    )
    rounds = [
        PhaseRound(r.real_img, r.real_c, r.gen_z, r.gen_c, real_units=torch.arange(len(r.real_img))) for r in rounds
    ]  # each real its own privacy unit, as the Poisson sampler's draws number them
    phase = Phase("Dboth", D, torch.optim.Adam(D.parameters(), lr=0.0025, betas=(0.0, 0.99)), 1, update)
    update(phase, loss, rounds)  # warm-up (R1 step)
    t_dp = []
    for _ in range(repeats):
        account.steps = 0  # one full lazy-R1 cycle: 1 step with R1, 15 without
        start = time.perf_counter()
        for _ in range(16):
            update(phase, loss, rounds)
        t_dp.append((time.perf_counter() - start) / 16)
    t_D_dp = float(np.median(t_dp))
    ratio = (t_G + t_D_dp) / (t_G + t_D)
    print(
        f"[dp] demo: Gmain {t_G:.2f}s; D standard {t_D:.2f}s/iteration, D DP-SGD {t_D_dp:.2f}s/iteration; "
        f"iteration DP / non-DP = {ratio:.2f}x (goal <= 3x)"
    )


# ---------------------------------------------------------------------------------------------------------------
# The clinical loss term's cost in Gmain (spine.clinical.loss), demo preset.


def untrained_classifier(res: int) -> torch.nn.Module:
    """A small_cnn SpineClassifier for 1-channel res x res abnormality labels, random weights (timing only)."""
    from spine.classifier.artifact import ClassifierSpec, SpineClassifier
    from spine.classifier.models import build_network

    spec = ClassifierSpec(
        arch="small_cnn",
        arch_kwargs={},
        label_mode="abnormality",
        class_names=("normal", "abnormal"),
        resolution=res,
        channels=1,
        intensity=dict(scale=1 / 255, mean=[0.5], std=[0.25]),
        thresholds=(0.5,),
    )
    torch.manual_seed(0)
    return SpineClassifier(build_network("small_cnn", 1, spec.num_outputs), spec)


def bench_clinical(repeats: int) -> None:
    """Gmain with and without the term, timed alternately (a loaded machine's drift hits both alike)."""
    from spine.clinical.loss import ClinicalLoss

    cfg = CONFIGS["demo"]
    loss, phases, _, rounds = build(cfg)
    terms = [ClinicalLoss(untrained_classifier(cfg["res"]), weight=0.1)]
    t_D = (
        time_phase(phases["Dmain"], loss, rounds, repeats)[0]
        + time_phase(phases["Dreg"], loss, rounds, repeats)[0] / 16
    )
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(2 * repeats + 2):  # the first pair is a warm-up
        with_term = bool(i % 2)
        loss.generator_terms = terms if with_term else []
        start = time.perf_counter()
        phases["Gmain"].update(phases["Gmain"], loss, rounds)
        if i >= 2:
            times[with_term].append(time.perf_counter() - start)
    t_plain, t_clinical = float(np.median(times[False])), float(np.median(times[True]))
    extra = t_clinical - t_plain
    print(
        f"[clinical] demo: Gmain {t_plain:.3f}s without, {t_clinical:.3f}s with the clinical loss "
        f"(+{extra / t_plain:.1%} of Gmain); iteration {t_plain + t_D:.3f}s -> {t_clinical + t_D:.3f}s, "
        f"overhead {extra / (t_plain + t_D):.1%} per iteration (goal < 15%; medians of {repeats} alternated pairs)"
    )


@click.command()
@click.option("--config", type=click.Choice(["demo", "official", "both"]), default="both", show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--dp", "with_dp", is_flag=True, help="Also compare DP-SGD with the standard D step (demo preset)")
@click.option("--clinical", "with_clinical", is_flag=True, help="Also time the clinical loss term (demo preset)")
@click.option("--bf16", "with_bf16", is_flag=True, help="Compare the bf16 blocks with fp32, side by side")
@click.option(
    "--skip-phases",
    is_flag=True,
    help="Only the --dp / --clinical / --bf16 / --bias-act sections, not the phase tables",
)
@click.option(
    "--batch", type=click.IntRange(min=2), default=None, help="Batch size of the --bf16 section [default: 16]"
)
@click.option(
    "--fp32-batch",
    type=click.IntRange(min=2),
    default=None,
    help="Batch size of the --bf16 section's fp32 arm [default: --batch]",
)
@click.option("--bias-act", "with_bias_act", is_flag=True, help="Compare bias_act's CPU kernel with the reference path")
def main(
    config: str,
    repeats: int,
    with_dp: bool,
    with_clinical: bool,
    with_bf16: bool,
    skip_phases: bool,
    batch: int | None,
    fp32_batch: int | None,
    with_bias_act: bool,
) -> None:
    if (batch or fp32_batch) and not with_bf16:
        raise click.UsageError("--batch and --fp32-batch size the --bf16 section: add --bf16")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}, bf16 blocks: "
        f"{precision.cpu_bf16_reason() or 'no (fp32)'}, load average {os.getloadavg()[0]:.2f}"
    )
    names = ["demo", "official"] if config == "both" else [config]
    for name in [] if skip_phases else names:
        bench(name, repeats)
    for name in names if with_bf16 else []:
        bench_precision(name, repeats, batch, fp32_batch)
    for name in names if with_bias_act else []:
        bench_bias_act(name, repeats)
    if with_dp:
        bench_dp(repeats)
    if with_clinical:
        bench_clinical(repeats)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
