"""CUDA-graph capture of whole training phases at fixed shapes (`training_loop(cuda_graphs=True)`, `--cuda-graphs`).

On a GPU the loop is bound by the host (docs/PERFORMANCE.md): each phase launches hundreds of small kernels. A CUDA
graph records one phase's kernels (forward, backward with R1 / path-length double backward, gradient clean-up,
Adam's step) once and replays them with one launch. A graph replays device work only, with the shapes and memory
of its capture, so a captured phase must never read a value back to the host, never draw on the host RNG, never
build a device tensor from host data and never change shape. `make_capturable` switches the parts that would:

  * the augment pipe to its fixed-shape form (`AugmentPipe.fixed_shapes`: same draws, same results);
  * style mixing to device-side draws (`StyleGAN2Loss.style_mixing_on_device`: same distribution);
  * Adam to `capturable=True` (its step counter on the device).

Whatever a phase accumulates across iterations is written in place (training_stats' pending moments, ADA's sign
sums, pl_mean, w_avg), so replays keep adding into the memory the tick reads. Each phase whose update rule is the
plain `GradientStep` gets a `GraphedUpdate`: a few eager calls on a side stream (cuDNN autotuning, lazy
allocations, the caches of device constants), then one capture, then replays with the rounds copied into the
captured input tensors. Other update rules (DP-SGD's per-sample step) stay eager. A capture that fails (a plug-in
term that reads the device, say) leaves that phase eager and says so. One process only: with several, the
gradient all-reduce would have to be captured too (NCCL), which is not done here.

CPU tests run the phases on the meta device under `torch_utils.host_access.forbid_host_access`; the GPU tests
compare a graphed phase's gradients with the eager ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from training.loss import StyleGAN2Loss
from training.phase_update import GradientStep, Phase, PhaseRound, PhaseUpdate

WARMUP_CALLS = 3  # eager calls of each phase before its capture


def describe(enabled: bool, device: torch.device) -> str:
    """The log line naming how phases run."""
    if enabled:
        return f"Phases: CUDA graphs (fixed shapes; each phase captured after {WARMUP_CALLS} eager calls)"
    return f"Phases: eager ({device.type})"


def make_capturable(phases: Sequence[Phase], loss: StyleGAN2Loss) -> list[Phase]:
    """Switch the loss, its augment pipe and the optimisers to their capturable forms and wrap every plain
    `GradientStep` in a `GraphedUpdate` (one CUDA graph per phase).

    The graphs share one memory pool, whatever order the lazy schedule replays them in: every tensor that outlives
    a replay (parameters, Adam's moments, statistics, pl_mean) is allocated before any capture and only written in
    place, so one graph's memory holds nothing another graph's replay still needs (gradients are made and consumed
    within their own graph)."""
    loss.style_mixing_on_device = True
    if loss.augment_pipe is not None:
        loss.augment_pipe.fixed_shapes = True
    for opt in {id(phase.opt): phase.opt for phase in phases}.values():
        make_optimizer_capturable(opt)
    pool = SharedPool()
    return [
        dataclasses.replace(phase, update=GraphedUpdate(phase.update, pool))
        if type(phase.update) is GradientStep
        else phase
        for phase in phases
    ]


class SharedPool:
    """One CUDA-graph memory pool for several graphs, made at the first capture (not before CUDA is needed)."""

    def __init__(self):
        self._handle: tuple | None = None

    def handle(self) -> tuple:
        if self._handle is None:
            self._handle = torch.cuda.graph_pool_handle()
        return self._handle


def make_optimizer_capturable(opt: torch.optim.Optimizer) -> None:
    """Adam with its step counters on the parameters' device (also those restored from a checkpoint)."""
    for group in opt.param_groups:
        group["capturable"] = True
        for param in group["params"]:
            state = opt.state.get(param, {})
            if "step" in state:
                state["step"] = state["step"].to(device=param.device, dtype=torch.float32)


class GraphedUpdate:
    """A `PhaseUpdate` that runs `inner` eagerly for WARMUP_CALLS calls, then captures one call into a CUDA graph
    and replays it for this and every later call, with the rounds copied into the captured inputs."""

    def __init__(self, inner: PhaseUpdate, pool: SharedPool | None = None):
        self.inner = inner
        self.pool = pool or SharedPool()
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_rounds: list[PhaseRound] | None = None
        self.grads: list[torch.Tensor | None] = []  # the parameters' gradients as the graph writes them
        self.failure: str | None = None  # why capture failed; the phase then stays eager

    def __call__(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        self.calls += 1
        if self.failure is not None or any(r.real_units is not None for r in rounds):
            self.inner(phase, loss, rounds)  # drawn batches vary in size: never captured
            return
        if self.graph is None and self.calls <= WARMUP_CALLS:
            self._run_on_side_stream(phase, loss, rounds)
            return
        if self.graph is None:
            self._capture(phase, loss, rounds)
            if self.graph is None:
                self.inner(phase, loss, rounds)
                return
        elif not self._copy_inputs(rounds):
            self.inner(phase, loss, rounds)  # a batch of another shape (the last one of a resume, say): eager
            return
        self.graph.replay()
        for param, grad in zip(phase.module.parameters(), self.grads):
            param.grad = grad  # as after an eager step (another phase's update may have replaced them)

    def _run_on_side_stream(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        """Eager warm-up on a side stream, as capture requires of the work before it."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.inner(phase, loss, rounds)
        torch.cuda.current_stream().wait_stream(side)

    def _capture(self, phase: Phase, loss: StyleGAN2Loss, rounds: Sequence[PhaseRound]) -> None:
        self.static_rounds = [
            PhaseRound(r.real_img.clone(), r.real_c.clone(), r.gen_z.clone(), r.gen_c.clone()) for r in rounds
        ]
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        try:
            # thread_local: the data loader's pinning thread may call CUDA meanwhile; that is not this capture's.
            with torch.cuda.graph(graph, pool=self.pool.handle(), capture_error_mode="thread_local"):
                self.inner(phase, loss, self.static_rounds)
        except RuntimeError as exc:  # e.g. "operation not permitted when stream is capturing"
            self.failure = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            self.static_rounds = None
            print(f"Phase {phase.name}: CUDA-graph capture failed ({self.failure}); the phase runs eagerly")
            return
        self.graph = graph
        self.grads = [param.grad for param in phase.module.parameters()]

    def _copy_inputs(self, rounds: Sequence[PhaseRound]) -> bool:
        """Copy the rounds into the captured inputs; False if their number or shapes differ from the capture's."""
        static = self.static_rounds
        pairs = [
            (s, r)
            for s_round, r_round in zip(static, rounds)
            for s, r in (
                (s_round.real_img, r_round.real_img),
                (s_round.real_c, r_round.real_c),
                (s_round.gen_z, r_round.gen_z),
                (s_round.gen_c, r_round.gen_c),
            )
        ]
        if len(rounds) != len(static) or any(s.shape != r.shape for s, r in pairs):
            return False
        for s, r in pairs:
            s.copy_(r, non_blocking=True)
        return True
