"""bench/steady_speed.py: the steady figures of a run from its stats.jsonl."""

import importlib.util
import json
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "steady_speed", Path(__file__).resolve().parents[2] / "bench" / "steady_speed.py"
)
steady_speed = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(steady_speed)


def write_stats(path: Path, ticks: list[tuple[float, float]]) -> Path:
    """One stats.jsonl line per tick, with the loop's names: (sec/kimg, peak GPU GB)."""
    lines = [
        json.dumps(
            {
                "Progress/tick": {"num": 1, "mean": i, "std": 0},
                "Timing/sec_per_kimg": {"num": 1, "mean": speed, "std": 0},
                "Resources/peak_gpu_mem_gb": {"num": 1, "mean": memory, "std": 0},
            }
        )
        for i, (speed, memory) in enumerate(ticks)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_start_up_ticks_are_left_out(tmp_path):
    # Tick 0 (start-up, autotuning peak 30 GB) and tick 1 are skipped: median of 5, 7, 6 and the largest later peak.
    stats = write_stats(tmp_path / "stats.jsonl", [(300, 30.0), (9, 4.0), (5, 3.5), (7, 3.9), (6, 3.6)])
    assert steady_speed.steady_figures(stats, skip=2) == (6, 3.9, 3)


def test_a_run_without_steady_ticks_is_refused(tmp_path):
    stats = write_stats(tmp_path / "stats.jsonl", [(300, 30.0), (9, 4.0)])
    with pytest.raises(ValueError, match="2 tick\\(s\\), none after the first 2"):
        steady_speed.steady_figures(stats, skip=2)
