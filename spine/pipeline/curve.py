"""Training curves: does the clinical loss accelerate training? (issue 26, goal 5; the paper's claim as stated)

Each generator of the config's `curve_arms` (every replicate seed) is scored at its first snapshot at or after each
of `curve_kimg` (train.py keeps a network snapshot every `snap` ticks): its synthetic images' `curve_metrics` (label
fidelity again by the independent judge; recall and precision in whichever feature spaces the metric names say) and
the synthetic-only skill ratio of each `curve_panel` member, against that member's real-trained model of the
downstream table or the panel (reused, so a point costs one synthesis and one classifier per member).

The summary pairs the clinical-loss pair (`CLINICAL_LOSS_PAIR`: treated minus control) by training seed at every
kimg, and gives kimg-to-threshold: per seed the first curve kimg at which a figure reaches its threshold, and the
paired difference. Intervals are Student-t over seed pairs: they cover training randomness (a new pair of
generators); each point is one synthesis, one classifier and one fixed test split, not resampled.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import dnnlib
from spine.evaluation.arms import REAL
from spine.evaluation.downstream import DownstreamOptions, skill_ratio
from spine.evaluation.panel import PanelMember
from spine.pipeline.config import CLINICAL_LOSS_PAIR, ExperimentConfig, Variant
from spine.pipeline.report_tables import metric_of
from spine.pipeline.seeds import across_seeds, seeds_of
from spine.scoring import roc_auc, save_json

SKILL = "skill/"  # prefix of a curve member's skill-ratio figure: 'skill/patch_cnn:blurred_image'
_SNAPSHOT = re.compile(r"network-snapshot-(\d+(?:\.\d+)?)\.pkl$")
INTERVAL_COVERS = (
    "Student-t 95% interval of the mean over training-seed pairs (training randomness); each point is one "
    "synthesis, one classifier and one fixed test split, not resampled"
)


def curve_variants(config: ExperimentConfig) -> list[Variant]:
    """The generators the curve scores: every training seed of every arm in `curve_arms`, in config order."""
    if not config.curve_kimg:
        return []
    names = {arm.variant for name in config.curve_arms for arm in seeds_of(config, name)}
    return [v for v in config.variants if v.name in names]


def run_snapshots(run_dirs: Sequence[str]) -> list[tuple[float, str]]:
    """(kimg, path) of every network snapshot of a run and its continuations, in kimg order."""
    found = []
    for run_dir in run_dirs:
        for path in glob.glob(os.path.join(run_dir, "network-snapshot-*.pkl")):
            match = _SNAPSHOT.search(os.path.basename(path))
            if match is not None:
                found.append((float(match[1]), path))
    return sorted(found)


def snapshot_at(run_dirs: Sequence[str], kimg: int) -> tuple[str, float]:
    """(path, its kimg) of the first network snapshot at or after `kimg` in a run and its continuations."""
    found = run_snapshots(run_dirs)
    later = [item for item in found if item[0] >= kimg]
    if not later:
        kept = [k for k, _ in found]
        raise RuntimeError(f"{list(run_dirs)}: no network snapshot at or after {kimg} kimg (kept: {kept})")
    return later[0][1], later[0][0]


def last_snapshots(run_dirs: Sequence[str], count: int) -> list[str]:
    """The last `count` network snapshots of a run and its continuations, oldest first (a trajectory pool's)."""
    found = run_snapshots(run_dirs)
    if len(found) < count:
        raise RuntimeError(f"{list(run_dirs)}: {count} snapshots wanted, {len(found)} kept ({[k for k, _ in found]})")
    return [path for _kimg, path in found[-count:]]


OVERALL = ("", "_auc", "_accuracy", "_precision", "_recall", "_mean", "_std")  # a metric's result suffixes kept


def overall_figures(results: Mapping[str, Any]) -> dict[str, float]:
    """A snapshot's float metric results without the per-class ones (`label_fidelity500_normal_auc`): the curve
    tracks each metric's overall figures."""
    return {key: float(value) for key, value in results.items() if isinstance(value, float) and _overall(key)}


def _overall(key: str) -> bool:
    """Whether a result key is its metric's name plus an overall suffix; a key of no metric name this code knows
    (another registry's) is kept."""
    from metrics.metric_names import is_valid_metric

    parts = key.removeprefix("independent_").split("_")
    for end in range(len(parts), 0, -1):
        if is_valid_metric("_".join(parts[:end])):
            return "".join(f"_{part}" for part in parts[end:]) in OVERALL
    return True


def is_lower_better(figure: str) -> bool:
    """FID and KID fall as a generator improves; every other curve figure rises."""
    from metrics.metric_names import MetricNameError, parse_metric

    if figure.startswith(SKILL):
        return False
    try:
        return parse_metric(metric_of(figure.removeprefix("independent_"))).kind in ("fid", "kid")
    except MetricNameError:
        return False


def member_skills(
    synthetic_zip: str,
    test: Any,
    real_aucs: Mapping[str, float],
    options: DownstreamOptions,
) -> dict[str, float]:
    """Per member ('ARCH:NORM' of `real_aucs`): its synthetic-only classifier trained on `synthetic_zip` under the
    downstream protocol, its test AUC and skill ratio against the member's real-trained AUC."""
    import dataclasses

    from spine.classifier.data import load_labelled_images, predict_probabilities
    from spine.classifier.training import train_classifier

    fake = load_labelled_images(synthetic_zip)
    labels = test.labels.numpy()
    figures = {}
    for name, real_auc in real_aucs.items():
        member = PanelMember.parse(name)
        member_options = dataclasses.replace(options, arch=member.arch, input_norm=member.input_norm)
        model = train_classifier(fake, member_options.train_options(fake.resolution))
        scores = predict_probabilities(model.net, model.spec, test.images, options.batch_size).double().numpy()
        auc = roc_auc(labels, scores)
        figures[f"synthetic_auc/{name}"] = auc
        figures[f"{SKILL}{name}"] = skill_ratio(auc, real_auc)
    return figures


def real_aucs(folders: Mapping[str, str], test: Any) -> dict[str, float]:
    """Each member's real-trained model (its downstream folder's `classifier-real.pkl`) scored on the test set."""
    from spine.evaluation.comparison import arm_scores

    labels = test.labels.numpy()
    return {member: roc_auc(labels, arm_scores(folder, [REAL], test)[REAL]) for member, folder in folders.items()}


# ----------------------------------------------------------------------------------------------------------------
# The summary over seeds.


def _figures(step: Mapping[str, Any]) -> dict[int, dict[str, float]]:
    """{requested kimg: {figure: value}} of one generator's curve step."""
    return {int(point["kimg"]): point["figures"] for point in step["points"]}


def _reached(values: Mapping[int, Mapping[str, float]], figure: str, threshold: float) -> int | None:
    """The first curve kimg at which `figure` reaches `threshold`, else None."""
    lower = is_lower_better(figure)
    for kimg in sorted(values):
        value = values[kimg].get(figure)
        if value is not None and not np.isnan(value) and (value <= threshold if lower else value >= threshold):
            return kimg
    return None


def _mean(values: list[float]) -> float | None:
    """The mean over seeds; None where no seed has the figure (a metric that could not run)."""
    return float(np.mean(values)) if values else None


def _interval(values: list[float]) -> dict[str, Any]:
    """Mean of paired differences with its t-interval (None with fewer than two pairs)."""
    if not values:
        return dict(mean=None, low=None, high=None, num_pairs=0)
    if len(values) < 2:
        return dict(mean=float(values[0]), low=None, high=None, num_pairs=1)
    mean, low, high = across_seeds(values)
    return dict(mean=mean, low=low, high=high, num_pairs=len(values))


def summarize_curve(steps: Mapping[str, Any], config: ExperimentConfig) -> dict[str, Any]:
    """Per curve arm and kimg the figures of each seed and their mean; the clinical-loss pair's differences paired
    by seed at every kimg; kimg-to-threshold per seed and paired (`curve_thresholds`)."""
    arms: dict[str, dict[int, dict[int, dict[str, float]]]] = {}  # arm -> seed -> kimg -> figures
    for name in config.curve_arms:
        arms[name] = {
            arm.seed: _figures(steps[f"curve/{arm.variant}"])
            for arm in seeds_of(config, name)
            if f"curve/{arm.variant}" in steps
        }
    kimgs = list(config.curve_kimg)
    figures = sorted({f for seeds in arms.values() for per in seeds.values() for v in per.values() for f in v})
    means = {
        name: {
            str(k): {f: _mean([per[k][f] for per in seeds.values() if f in per.get(k, {})]) for f in figures}
            for k in kimgs
        }
        for name, seeds in arms.items()
        if seeds
    }
    summary: dict[str, Any] = dict(
        kimg=kimgs, arms={n: sorted(s) for n, s in arms.items()}, figures=figures, means=means, covers=INTERVAL_COVERS
    )
    treated, control = CLINICAL_LOSS_PAIR
    if treated in arms and control in arms:
        seeds = sorted(set(arms[treated]) & set(arms[control]))
        summary["pair"] = dict(treated=treated, control=control, seeds=seeds)
        summary["differences"] = {
            str(k): {
                f: _interval(
                    [
                        arms[treated][s][k][f] - arms[control][s][k][f]
                        for s in seeds
                        if f in arms[treated][s].get(k, {}) and f in arms[control][s].get(k, {})
                    ]
                )
                for f in figures
            }
            for k in kimgs
        }
        summary["to_threshold"] = {
            figure: _to_threshold(arms[treated], arms[control], seeds, figure, threshold)
            for figure, threshold in sorted(config.curve_thresholds.items())
        }
    return summary


def _to_threshold(
    treated: Mapping[int, Any], control: Mapping[int, Any], seeds: list[int], figure: str, threshold: float
) -> dict[str, Any]:
    """Per seed the kimg each arm's figure first reaches `threshold` (None: not by the last curve kimg), and the
    paired difference over the seeds where both reached it."""
    per_seed = {
        str(s): dict(treated=_reached(treated[s], figure, threshold), control=_reached(control[s], figure, threshold))
        for s in seeds
    }
    both = [row["treated"] - row["control"] for row in per_seed.values() if None not in row.values()]
    return dict(
        threshold=threshold,
        direction="at or below" if is_lower_better(figure) else "at or above",
        per_seed=per_seed,
        difference=_interval([float(d) for d in both]),
    )


def _number(value: float | None, digits: int = 3, sign: str = "") -> str:
    return "n/a" if value is None else f"{value:{sign}.{digits}f}"


def format_difference(row: Mapping[str, Any], digits: int = 3) -> str:
    """'+0.120 (-0.050 to +0.290), 3 pairs' (no interval with one pair)."""
    text = _number(row["mean"], digits, "+")
    if row["low"] is not None:
        text += f" ({row['low']:+.{digits}f} to {row['high']:+.{digits}f})"
    return text + f", {row['num_pairs']} pair{'s' if row['num_pairs'] != 1 else ''}"


def markdown_table(summary: Mapping[str, Any]) -> str:
    """Means per arm and the paired difference per figure and kimg, then kimg-to-threshold per seed."""
    arms = list(summary["means"])
    lines = ["| figure | kimg | " + " | ".join(f"{a} (mean over seeds)" for a in arms) + " | paired difference |"]
    lines.append("| --- | --- | " + " | ".join("---" for _ in arms) + " | --- |")
    for figure in summary["figures"]:
        for k in summary["kimg"]:
            cells = [_number(summary["means"][a][str(k)].get(figure)) for a in arms]
            diff = summary.get("differences", {}).get(str(k), {}).get(figure)
            lines.append(f"| {figure} | {k} | " + " | ".join(cells) + f" | {format_difference(diff) if diff else ''} |")
    pair = summary.get("pair")
    if pair:
        lines += [
            "",
            f"Paired differences: {pair['treated']} minus {pair['control']}, by training seed {pair['seeds']}.",
        ]
    for figure, row in summary.get("to_threshold", {}).items():
        seeds = ", ".join(
            f"seed {s}: {r['treated'] if r['treated'] is not None else 'not reached'} against "
            f"{r['control'] if r['control'] is not None else 'not reached'}"
            for s, r in row["per_seed"].items()
        )
        lines.append(
            f"- kimg to {figure} {row['direction']} {row['threshold']:g} ({pair['treated']} against "
            f"{pair['control']}): {seeds}; paired difference {format_difference(row['difference'], 1)} kimg"
        )
    lines += ["", f"Intervals: {summary['covers']}."]
    return "\n".join(lines) + "\n"


def write_curve(summary: Mapping[str, Any], workdir: Path) -> dict[str, str]:
    save_json(dict(summary), str(workdir / "curve.json"))
    with dnnlib.atomic_write(workdir / "curve.md", "w") as f:
        f.write(markdown_table(summary))
    return dict(json=str(workdir / "curve.json"), markdown=str(workdir / "curve.md"))


def curve_member_folders(config: ExperimentConfig, downstream_dir: str, panel_dir: str | None) -> dict[str, str]:
    """{curve member: the folder of its real-trained model}: the downstream table's for the protocol's own member,
    the panel's member folder for the others."""
    own = f"{config.classifier_arch}:{config.classifier_input_norm}"
    folders = {}
    for text in config.curve_panel:
        member = PanelMember.parse(text)
        if member.name == own:
            folders[member.name] = downstream_dir
        else:
            if panel_dir is None:
                raise RuntimeError(f"curve_panel member {member.name}: the panel step has not run")
            folders[member.name] = os.path.join(panel_dir, member.folder)
    return folders
