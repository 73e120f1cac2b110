"""Classification metrics for spine classifiers: ROC AUC with a bootstrap interval, Youden operating point, ROC plots.

Intervals resample studies when the caller names each case's study (`groups`): the images of one study show the
same lesions, so resampling images as if independent gives intervals that are too narrow. A two-level bootstrap
(`hierarchical_values`) adds a second source of variation, e.g. generator training seeds. Every report says what
its interval covers (`resampled`).

General on purpose: the classifier CLI, label fidelity and the downstream train-on-synthetic / test-on-real
evaluation all score predictions the same way. Binary predictions are a score per sample for the positive class;
multi-class predictions are an [N, K] score matrix scored one-vs-rest per class plus the macro average.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

import dnnlib


def _as_binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(f"labels and scores must be 1-D and of equal length, got {labels.shape} and {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("binary labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return labels.astype(bool), scores


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, i.e. P(score_pos > score_neg) + 0.5 P(tie) (the Mann-Whitney U statistic).

    Raises ValueError when only one class is present, where AUC is undefined.
    """
    pos, scores = _as_binary(labels, scores)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC is undefined when only one class is present in the labels")
    ranks = scipy.stats.rankdata(scores)  # mid-ranks give ties half credit
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    """ROC points for the rule `positive iff score >= threshold`, one per distinct score, descending thresholds.

    The first point is (fpr=0, tpr=0) at threshold +inf.
    """
    pos, scores = _as_binary(labels, scores)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the ROC curve is undefined when only one class is present in the labels")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    tp = np.cumsum(pos[order])
    fp = np.cumsum(~pos[order])
    # The last index of each run of equal scores: every sample at that score is called positive together.
    last = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), sorted_scores.size - 1]
    return dict(
        fpr=np.r_[0.0, fp[last] / n_neg],
        tpr=np.r_[0.0, tp[last] / n_pos],
        thresholds=np.r_[np.inf, sorted_scores[last]],
    )


def youden_point(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The threshold maximising Youden's J = sensitivity + specificity - 1 (ties: the highest threshold)."""
    curve = roc_curve(labels, scores)
    j = curve["tpr"] - curve["fpr"]
    best = int(np.argmax(j[1:])) + 1  # skip the +inf point: it is never a usable decision rule
    return dict(
        threshold=float(curve["thresholds"][best]),
        sensitivity=float(curve["tpr"][best]),
        specificity=float(1 - curve["fpr"][best]),
        youden_j=float(j[best]),
    )


def operating_point(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity and specificity of `positive iff score >= threshold` (a threshold fixed beforehand, e.g. on
    validation)."""
    pos, scores = _as_binary(labels, scores)
    called = scores >= threshold
    return dict(
        threshold=float(threshold),
        sensitivity=float(called[pos].mean()) if pos.any() else math.nan,
        specificity=float((~called[~pos]).mean()) if (~pos).any() else math.nan,
    )


Groups = Sequence[Hashable | None] | None  # one study id per case (None: a case of its own), or None: every case alone


def resampling_unit(groups: Groups) -> str:
    """What a bootstrap over these cases resamples, for the label of its interval."""
    return "images" if groups is None or all(study is None for study in groups) else "studies"


def _clusters(num_samples: int, groups: Groups) -> list[np.ndarray] | None:
    """Case indices per study, studies in order of first appearance (so one case per study resamples exactly as
    without groups); a case whose study is None forms a study of its own."""
    if groups is None:
        return None
    if len(groups) != num_samples:
        raise ValueError(f"groups must name one study per case: {len(groups)} for {num_samples} cases")
    members: dict[Hashable, list[int]] = {}
    for index, study in enumerate(groups):
        members.setdefault(("case", index) if study is None else ("study", study), []).append(index)
    return [np.asarray(indices, dtype=np.int64) for indices in members.values()]


def _draw_cases(rng: np.random.Generator, num_samples: int, clusters: list[np.ndarray] | None) -> np.ndarray:
    """One resample with replacement: of cases, or of whole studies (all their cases) when clustered."""
    if clusters is None:
        return rng.integers(0, num_samples, num_samples)
    picks = rng.integers(0, len(clusters), len(clusters))
    return np.concatenate([clusters[k] for k in picks])


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    num_samples: int,
    is_valid: Callable[[np.ndarray], bool],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_redraws: int | None = None,
    groups: Groups = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(indices)` over resamples of `num_samples` cases with replacement
    (of whole studies when `groups` names each case's study).

    A resample where the statistic is undefined (`is_valid` false, e.g. one class only) is redrawn rather than
    dropped, so every interval rests on exactly `n_resamples` values.
    """
    if not 0 < confidence < 1:  # checked before the resampling work, not after
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = bootstrap_values(
        lambda idx: np.array([statistic(idx)]), num_samples, is_valid, n_resamples, seed, max_redraws, groups
    )
    return percentile_interval(values[:, 0], confidence)


def bootstrap_values(
    statistics: Callable[[np.ndarray], np.ndarray],
    num_samples: int,
    is_valid: Callable[[np.ndarray], bool],
    n_resamples: int = 1000,
    seed: int = 0,
    max_redraws: int | None = None,
    groups: Groups = None,
) -> np.ndarray:
    """[n_resamples, K] values of `statistics(indices)` (K numbers per resample) over seeded resamples with
    replacement: several statistics computed on the very same resamples, as paired comparisons need.

    The resamples depend only on `seed`, `num_samples`, `groups` and `is_valid`, so two calls with the same four see
    the same test images; invalid resamples are redrawn as in `bootstrap_interval`.
    """
    return hierarchical_values(
        lambda _, idx: statistics(idx),
        1,
        num_samples,
        is_valid,
        n_resamples,
        seed,
        max_redraws,
        groups,
        resample_replicates=False,
    )


def hierarchical_values(
    statistics: Callable[[np.ndarray, np.ndarray], np.ndarray],
    num_replicates: int,
    num_samples: int,
    is_valid: Callable[[np.ndarray], bool],
    n_resamples: int = 1000,
    seed: int = 0,
    max_redraws: int | None = None,
    groups: Groups = None,
    resample_replicates: bool = True,
) -> np.ndarray:
    """[n_resamples, K] values of `statistics(replicates, indices)` under a two-level bootstrap: each resample draws
    `num_replicates` replicates (e.g. generators trained with different seeds) with replacement and, independently,
    the test cases (whole studies when `groups` is given), so an interval covers training randomness and the test
    draw together. `statistics` averages over the drawn replicates itself (a replicate drawn twice counts twice).
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    if num_replicates < 1:
        raise ValueError(f"num_replicates must be positive, got {num_replicates}")
    clusters = _clusters(num_samples, groups)
    max_redraws = 100 * n_resamples if max_redraws is None else max_redraws
    rng = np.random.default_rng(seed)
    rows = []
    redraws = 0
    for _ in range(n_resamples):
        replicates = (
            rng.integers(0, num_replicates, num_replicates) if resample_replicates else np.arange(num_replicates)
        )
        idx = _draw_cases(rng, num_samples, clusters)
        while not is_valid(idx):
            redraws += 1
            if redraws > max_redraws:
                raise ValueError(f"bootstrap gave up after {max_redraws} invalid resamples: too few cases of a class")
            idx = _draw_cases(rng, num_samples, clusters)
        rows.append(np.asarray(statistics(replicates, idx), dtype=np.float64))
    return np.stack(rows)


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central `confidence` percentile interval of bootstrap values."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _auc_with_interval(
    labels: np.ndarray, scores: np.ndarray, n_resamples: int, seed: int, confidence: float, groups: Groups
) -> dict[str, Any]:
    pos = np.asarray(labels).astype(bool)
    low, high = bootstrap_interval(
        statistic=lambda idx: roc_auc(labels[idx], scores[idx]),
        num_samples=len(labels),
        is_valid=lambda idx: 0 < pos[idx].sum() < len(idx),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
        groups=groups,
    )
    return dict(auc=roc_auc(labels, scores), auc_ci=[low, high])


def _binary_report(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    n_resamples: int,
    seed: int,
    confidence: float,
    groups: Groups,
) -> dict[str, Any]:
    """AUC, its interval, the Youden point of these data, and the operating point at a fixed threshold if given."""
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    report: dict[str, Any] = dict(num_positive=int(labels.sum()), num_negative=int((labels == 0).sum()))
    if report["num_positive"] == 0 or report["num_negative"] == 0:
        report.update(auc=None, auc_ci=None, youden=None)  # undefined, not zero: say so instead of failing
    else:
        report.update(_auc_with_interval(labels, scores, n_resamples, seed, confidence, groups))
        report["youden"] = youden_point(labels, scores)
    if threshold is not None:
        report["at_threshold"] = operating_point(labels, scores, threshold)
    return report


def evaluate_scores(
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups: Groups = None,
) -> dict[str, Any]:
    """Score predictions against integer class labels.

    Binary (two class names): `scores` is [N], the score of class 1. Multi-class: `scores` is [N, K], one column
    per class, each scored one-vs-rest, plus the macro average over classes with both positives and negatives.
    `thresholds` (one per binary score / per class) are fixed beforehand, e.g. the validation Youden point; the
    Youden point reported here is chosen on these very data and is therefore optimistic. `groups` names each
    case's study, so that intervals resample whole studies (`resampled` in the report says which was resampled).
    """
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    num_classes = len(class_names)
    if labels.ndim != 1 or labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise ValueError(f"labels must be a 1-D array of class indices in [0, {num_classes})")
    binary = num_classes == 2 and scores.ndim == 1
    expected_shape = (len(labels),) if binary else (len(labels), num_classes)
    if scores.shape != expected_shape:
        raise ValueError(f"scores must have shape {expected_shape} for {num_classes} classes, got {scores.shape}")
    num_thresholds = 1 if binary else num_classes
    if thresholds is not None and len(thresholds) != num_thresholds:
        raise ValueError(f"expected {num_thresholds} thresholds, got {len(thresholds)}")
    common = dict(
        num_samples=int(len(labels)),
        class_names=list(class_names),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
        resampled=resampling_unit(groups),
        prevalence={name: float((labels == k).mean()) for k, name in enumerate(class_names)},
    )
    if binary:
        return dict(
            common,
            task="binary",
            **_binary_report(
                labels, scores, None if thresholds is None else thresholds[0], n_resamples, seed, confidence, groups
            ),
        )
    return dict(
        common,
        task="multiclass",
        **_multiclass_report(labels, scores, class_names, thresholds, n_resamples, seed, confidence, groups),
    )


def _multiclass_report(
    labels: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | None,
    n_resamples: int,
    seed: int,
    confidence: float,
    groups: Groups,
) -> dict[str, Any]:
    per_class = {
        name: _binary_report(
            labels == k,
            scores[:, k],
            None if thresholds is None else thresholds[k],
            n_resamples,
            seed + k,
            confidence,
            groups,
        )
        for k, name in enumerate(class_names)
    }
    defined = [k for k, name in enumerate(class_names) if per_class[name]["auc"] is not None]
    if not defined:
        return dict(per_class=per_class, macro_auc=None, macro_auc_ci=None, macro_classes=[])

    def macro(idx: np.ndarray) -> float:
        return float(np.mean([roc_auc(labels[idx] == k, scores[idx, k]) for k in defined]))

    def every_class_defined(idx: np.ndarray) -> bool:
        present = np.bincount(labels[idx], minlength=len(class_names))
        return all(0 < present[k] < len(idx) for k in defined)

    interval = bootstrap_interval(macro, len(labels), every_class_defined, n_resamples, seed, confidence, groups=groups)
    return dict(
        per_class=per_class,
        macro_auc=macro(np.arange(len(labels))),
        macro_auc_ci=list(interval),
        macro_classes=[class_names[k] for k in defined],
    )


def roc_curves(labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """ROC curves keyed by class name (binary: one curve for class 1), skipping classes where ROC is undefined."""
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return {class_names[1]: roc_curve(labels, scores)}
    return {
        name: roc_curve(labels == k, scores[:, k])
        for k, name in enumerate(class_names)
        if 0 < (labels == k).sum() < len(labels)
    }


def save_roc_plot(curves: Mapping[str, Mapping[str, np.ndarray]], path: str | Path, title: str = "ROC") -> None:
    """Write the ROC curves (with each curve's AUC in the legend) as a PNG, atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display backend

    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    for name, curve in curves.items():
        auc = float(np.trapezoid(curve["tpr"], curve["fpr"]))
        ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right", fontsize="small")
    with dnnlib.atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")


def save_json(obj: Any, path: str | Path) -> None:
    """Write `obj` as indented JSON, atomically."""
    with dnnlib.atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
