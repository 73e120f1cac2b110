"""One-line warnings about metrics that will run but mislead or take hours: said before the work, not after.

* FID's expectation falls as the number of images grows (its estimate of the covariances is biased at small
  counts), so a FID of a few hundred images reads high and compares only with FIDs at the same count.
* On a CPU, Inception features cost about half a second per image (README "Metrics"), so fid50k_full is hours per
  evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable

from metrics.metric_names import parse_metric

SMALL_FID_COUNT = 1000  # below this many generated images the small-count bias of FID is worth a word
CPU_INCEPTION_IMAGES_PER_S = 2.0  # README "Metrics": Inception on a CPU
SLOW_ON_CPU_S = 3600.0  # warn when one evaluation would take longer than this


def small_count_warnings(names: Iterable[str]) -> list[str]:
    """A warning per FID metric of fewer than SMALL_FID_COUNT generated images."""
    return [
        f"{spec.name} compares only {spec.count} images: FID is biased upward at small counts (it falls as the "
        f"count grows), so compare it only with FIDs of the same count"
        for spec in map(parse_metric, names)
        if spec.kind == "fid" and spec.count < SMALL_FID_COUNT
    ]


def cpu_cost_warnings(names: Iterable[str], on_gpu: bool) -> list[str]:
    """A warning per Inception-space metric that would take more than an hour per evaluation on a CPU."""
    if on_gpu:
        return []
    warnings = []
    for spec in map(parse_metric, names):
        seconds = spec.count / CPU_INCEPTION_IMAGES_PER_S
        if spec.space == "inception" and seconds > SLOW_ON_CPU_S:
            warnings.append(
                f"{spec.name} on a CPU: Inception features of {spec.count} generated images take about "
                f"{seconds / 3600:.0f} h per evaluation at ~{CPU_INCEPTION_IMAGES_PER_S:g} images/s "
                f"(consider --metrics=none, a smaller count such as fid2k, or a *_spine metric)"
            )
    return warnings
