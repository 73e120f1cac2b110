"""training_stats: moments of reported values per interval, across devices and across processes."""

import json
import math

import numpy as np
import pytest
import torch

from torch_utils import training_stats
from training import distributed as dist_utils


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Each test starts with no reports, as a new process would."""
    monkeypatch.setattr(training_stats, "_pending", {})
    monkeypatch.setattr(training_stats, "_cumulative", {})
    monkeypatch.setattr(training_stats, "_rank", 0)
    monkeypatch.setattr(training_stats, "_sync_device", None)


def test_mean_std_num_over_all_reported_elements():
    values = [torch.tensor([1.0, 2.0, 4.0]), np.array([[8.0], [16.0]]), 32, torch.tensor([float("nan"), float("inf")])]
    collector = training_stats.Collector("Loss/.*")
    for v in values:
        assert training_stats.report("Loss/G", v) is v
    training_stats.report("Other", 5.0)
    collector.update()
    ref = np.array([1, 2, 4, 8, 16, 32], dtype=np.float64)  # non-finite elements are ignored
    assert collector.names() == ["Loss/G"]
    assert collector.num("Loss/G") == 6
    assert collector.mean("Loss/G") == pytest.approx(ref.mean())
    assert collector.std("Loss/G") == pytest.approx(ref.std())
    assert collector["Loss/G"] == pytest.approx(ref.mean())
    assert collector.as_dict() == {
        "Loss/G": {"num": 6, "mean": pytest.approx(ref.mean()), "std": pytest.approx(ref.std())}
    }
    assert collector.as_dict()["Loss/G"].num == 6
    assert collector.num("Other") == 0 and math.isnan(collector.mean("Other"))


def test_intervals_and_keep_previous():
    keep = training_stats.Collector()
    drop = training_stats.Collector(keep_previous=False)
    training_stats.report("a", [1.0, 3.0])
    keep.update()
    drop.update()
    assert keep.mean("a") == drop.mean("a") == 2.0
    training_stats.report("b", 7.0)
    keep.update()
    drop.update()
    assert keep.names() == ["a", "b"] and keep.mean("a") == 2.0  # no new 'a': previous kept
    assert drop.names() == ["b"]
    training_stats.report("a", 10.0)
    late = training_stats.Collector()  # starts at the last sync: sees only the new value
    keep.update()
    late.update()
    assert keep.num("a") == 1 and keep.mean("a") == 10.0
    assert late.num("a") == 1 and late.names() == ["a"]


def test_report0_registers_name_on_other_ranks(monkeypatch):
    monkeypatch.setattr(training_stats, "_rank", 1)
    collector = training_stats.Collector()
    training_stats.report0("Progress/tick", 5.0)
    assert "Progress/tick" in training_stats._pending
    collector.update()
    assert collector.num("Progress/tick") == 0
    with pytest.raises(ValueError, match="name"):
        training_stats.report("", 1.0)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        training_stats.init_multiprocessing(rank, torch.device("cpu"))
        collector = training_stats.Collector()
        training_stats.report("x", torch.tensor([1.0, 2.0, 3.0]) if rank == 0 else torch.tensor([10.0, 20.0]))
        training_stats.report0("only0", 4.0)
        collector.update()
        result = {name: [collector.num(name), collector.mean(name), collector.std(name)] for name in collector.names()}
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist_utils.shutdown()


def test_reduction_across_two_gloo_processes(tmp_path):
    # fork: the children inherit the imported torch instead of paying for a fresh import each.
    torch.multiprocessing.start_processes(
        _worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    ref = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["x"][0] == 5
        assert result["x"][1] == pytest.approx(ref.mean()) and result["x"][2] == pytest.approx(ref.std())
        assert result["only0"] == [1, 4.0, 0.0]
