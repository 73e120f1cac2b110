"""Per-phase timing (`Timing/<phase>` statistics) that never makes the host wait for the device.

On the CPU a phase's time is the wall clock around it, reported at once. On a GPU the host only queues kernels,
so the wall clock around a phase measures the queueing, and making it honest with `torch.cuda.synchronize` after
every phase stalls the queue (the loop did that until #15). Instead a pair of CUDA events is recorded around the
phase and the elapsed device times are read once, at the tick's end (`flush`), where the loop synchronises anyway
to print the status line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from torch_utils import training_stats


class PhaseTimer:
    """`with timer.phase(name): ...` times one phase; `flush()` reports what is still pending (CUDA events)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.device.type != "cuda":
            start = time.perf_counter()
            yield
            training_stats.report0("Timing/" + name, time.perf_counter() - start)
            return
        start_event = torch.cuda.Event(enable_timing=True)
        end_event = torch.cuda.Event(enable_timing=True)
        start_event.record()
        yield
        end_event.record()
        self._pending.append((name, start_event, end_event))

    def flush(self) -> None:
        """Report the device time of every phase timed since the last flush (waits for the last one to end)."""
        if not self._pending:
            return
        self._pending[-1][2].synchronize()
        by_name: dict[str, list[float]] = {}
        for name, start_event, end_event in self._pending:
            by_name.setdefault(name, []).append(start_event.elapsed_time(end_event) / 1000)  # ms -> s
        self._pending.clear()
        for name, seconds in by_name.items():
            training_stats.report0("Timing/" + name, seconds)
