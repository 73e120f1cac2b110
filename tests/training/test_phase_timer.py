"""Phase timing: the wall clock on the CPU at once, CUDA events read only at flush on a GPU."""

import time

import pytest
import torch

from torch_utils import training_stats
from training.phase_timer import PhaseTimer


def test_cpu_phase_is_timed_by_the_wall_clock_and_reported_at_once():
    collector = training_stats.Collector(regex="Timing/cpu_phase", keep_previous=False)
    timer = PhaseTimer(torch.device("cpu"))
    for _ in range(2):
        with timer.phase("cpu_phase"):
            time.sleep(0.02)
    collector.update()
    assert collector.num("Timing/cpu_phase") == 2
    assert 0.02 <= collector.mean("Timing/cpu_phase") < 1.0  # sleep() lasts at least its argument
    timer.flush()  # nothing pending on the CPU
    collector.update()
    assert collector.num("Timing/cpu_phase") == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_phase_times_wait_for_flush():
    collector = training_stats.Collector(regex="Timing/gpu_phase", keep_previous=False)
    timer = PhaseTimer(torch.device("cuda"))
    x = torch.randn(2048, 2048, device="cuda")
    for _ in range(3):
        with timer.phase("gpu_phase"):
            for _ in range(10):
                x = (x @ x).tanh()
    collector.update()
    assert collector.num("Timing/gpu_phase") == 0  # nothing read yet: no synchronisation per phase
    timer.flush()
    collector.update()
    assert collector.num("Timing/gpu_phase") == 3 and collector.mean("Timing/gpu_phase") > 0
