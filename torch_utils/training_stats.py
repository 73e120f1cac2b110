"""Named training statistics, accumulated cheaply where they are produced and reduced across ranks on demand.

`report(name, value)` adds the value's elements to running moments [count, sum, sum of squares] kept
on the value's own device (no host synchronisation in the training step). A `Collector` later sums
those moments over devices and, when torch.distributed is initialised, over processes, and gives the
mean and standard deviation of everything reported since its previous `update()`.

Every rank must call `Collector.update()` at the same points (it is a collective operation); call
`init_multiprocessing(rank, sync_device)` once per process before the first update.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

import dnnlib

_MOMENTS = 3  # [count, sum, sum of squares]
_DTYPE = torch.float64  # float32 sums drift over millions of reports

_rank = 0
_sync_device: torch.device | None = None
# name -> device -> moments reported since the last sync (the only state touched by report()).
_pending: dict[str, dict[torch.device, torch.Tensor]] = {}
# name -> moments over the whole run, summed over devices and ranks (updated by _sync()).
_cumulative: dict[str, torch.Tensor] = {}


def init_multiprocessing(rank: int, sync_device: torch.device | None) -> None:
    """Set this process's rank and the device used for the all-reduce (CPU for gloo, CUDA for NCCL).

    Must be called before the first Collector.update() in multi-process training.
    """
    global _rank, _sync_device
    _rank = rank
    _sync_device = sync_device


def report(name: str, value: Any) -> Any:
    """Accumulate the elements of `value` (tensor, array or number) under `name`; return `value` unchanged.

    NaN and infinite elements are ignored. An empty value still registers the name, so that every rank
    reduces the same names.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"training_stats.report: name must be a non-empty string, got {name!r}")
    elems = torch.as_tensor(value).detach().flatten().to(_DTYPE)
    finite = torch.isfinite(elems)
    elems = torch.where(finite, elems, 0)  # not elems[finite]: a boolean index waits for the device
    moments = torch.stack([finite.sum(dtype=_DTYPE), elems.sum(), elems.square().sum()])
    per_device = _pending.setdefault(name, {})
    if moments.device in per_device:
        per_device[moments.device].add_(moments)
    else:
        per_device[moments.device] = moments
    return value


def report0(name: str, value: Any) -> Any:
    """report() on rank 0 only; other ranks register the name with no values."""
    report(name, value if _rank == 0 else [])
    return value


def _sync(names: list[str]) -> list[torch.Tensor]:
    """Fold pending moments of `names` into the run totals (summed over ranks); return the totals."""
    if not names:
        return []
    device = _sync_device if _sync_device is not None else torch.device("cpu")
    deltas = torch.zeros([len(names), _MOMENTS], dtype=_DTYPE, device=device)
    for i, name in enumerate(names):
        for moments in _pending.get(name, {}).values():
            deltas[i] += moments.to(device)
            moments.zero_()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(deltas)
    deltas = deltas.cpu()
    for i, name in enumerate(names):
        _cumulative[name] = _cumulative.get(name, torch.zeros([_MOMENTS], dtype=_DTYPE)) + deltas[i]
    return [_cumulative[name] for name in names]


class Collector:
    """Statistics of the names matching `regex` over the interval between two `update()` calls.

    With `keep_previous`, a name that received no values in the last interval keeps the statistics of
    the interval before; otherwise it disappears from names().
    """

    def __init__(self, regex: str | None = None, keep_previous: bool = True):
        self._regex = re.compile(".*" if regex is None else regex)
        self._keep_previous = keep_previous
        # Cumulative totals at our last update: the first interval starts at the last sync (not a
        # collective call here, so collectors may be created on any rank at any time).
        self._seen: dict[str, torch.Tensor] = {
            name: total.clone() for name, total in _cumulative.items() if self._regex.fullmatch(name)
        }
        self._moments: dict[str, torch.Tensor] = {}  # interval moments shown to the caller

    def names(self) -> list[str]:
        """The names that have statistics for the last interval, sorted."""
        return sorted(self._moments)

    def update(self) -> None:
        """Take the statistics reported since the last update (a collective call across ranks)."""
        # Sorted, so that every rank reduces the same names in the same order.
        names = sorted(name for name in set(_pending) | set(_cumulative) if self._regex.fullmatch(name))
        if not self._keep_previous:
            self._moments.clear()
        for name, total in zip(names, _sync(names)):
            delta = total - self._seen.get(name, torch.zeros_like(total))
            self._seen[name] = total
            if delta[0] != 0:
                self._moments[name] = delta

    def num(self, name: str) -> int:
        """How many values were reported under `name` in the last interval (0 if none)."""
        return int(self._moments[name][0]) if name in self._moments else 0

    def mean(self, name: str) -> float:
        """Mean of the values reported under `name` in the last interval (NaN if none)."""
        count = self.num(name)
        return float(self._moments[name][1] / count) if count else float("nan")

    def std(self, name: str) -> float:
        """Population standard deviation of the values reported under `name` (NaN if none)."""
        count = self.num(name)
        if not count:
            return float("nan")
        mean = float(self._moments[name][1] / count)
        return float(np.sqrt(max(float(self._moments[name][2] / count) - mean**2, 0.0)))

    def as_dict(self) -> dnnlib.EasyDict:
        """{name: EasyDict(num, mean, std)} for every name of the last interval (JSON-friendly)."""
        return dnnlib.EasyDict(
            {
                name: dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
                for name in self.names()
            }
        )

    def __getitem__(self, name: str) -> float:
        """Shorthand for mean(name)."""
        return self.mean(name)
