"""Paired differences between finished downstream arms, on the same resamples of the same test images.

    python -m spine.evaluation.comparison --downstream runs/benchmark/downstream \\
        --test runs/benchmark/data/test/test32.zip \\
        --compare spinegan-pooled stylegan2-ada-pooled \\
        --compare spinegan-pooled spinegan,spinegan-seed1,spinegan-seed2

Each `--compare LEFT RIGHT` reports LEFT's test AUC minus RIGHT's, where RIGHT may name several arms separated by
commas (their mean AUC), and the same difference in skill ratio when the folder has the real arm. The interval is a
percentile bootstrap over resamples of the test images, each resample scoring every arm (paired), with the
resamples of the downstream table (same seed). Why: two arms' separate intervals overlap even when one beats the
other on nearly every resample; only the paired difference says so (docs/RESULTS.md, section J).

Arms are named as their `classifier-<arm>.pkl` files in the downstream folder; a generator's name alone means its
synthetic-only arm. This reads the test split again: use it to report an evaluation already made, never to choose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

import dnnlib
from spine.classifier.artifact import load_classifier
from spine.classifier.data import LabelledImages, load_labelled_images, predict_probabilities
from spine.evaluation.arms import REAL, Arm
from spine.evaluation.downstream import skill_ratio
from spine.scoring import Groups, bootstrap_values, percentile_interval, resampling_unit, roc_auc, save_json

Comparison = tuple[str, tuple[str, ...]]  # (left arm, right arms averaged)


def classifier_path(downstream_dir: str | Path, name: str) -> Path:
    """The saved model of arm `name`, or of its synthetic-only arm when `name` is a generator's name."""
    for arm in (name, Arm("synthetic", name).key):
        path = Path(downstream_dir) / f"classifier-{arm}.pkl"
        if path.is_file():
            return path
    raise dnnlib.UserError(
        f"--compare: {downstream_dir} has no classifier-{name}.pkl nor classifier-{Arm('synthetic', name).key}.pkl"
    )


def arm_scores(downstream_dir: str | Path, names: Sequence[str], test: LabelledImages) -> dict[str, np.ndarray]:
    """Each named arm's probability of the positive class on the test images."""
    if len(test.class_names) != 2:
        raise dnnlib.UserError(
            f"{test.source}: {len(test.class_names)} classes; comparisons take a binary (abnormality) test set"
        )
    scores = {}
    for name in names:
        path = classifier_path(downstream_dir, name)
        model = load_classifier(path)
        if list(model.spec.class_names) != list(test.class_names):
            raise dnnlib.UserError(
                f"{path}: classes {list(model.spec.class_names)} differ from the test set's {test.class_names}"
            )
        scores[name] = predict_probabilities(model, model.spec, test.images, 256).double().numpy()
    return scores


def arms_to_score(downstream_dir: str | Path, comparisons: Sequence[Comparison]) -> list[str]:
    """Every arm the comparisons name, once, and the real arm where the folder has it (for skill ratios)."""
    named = [name for left, right in comparisons for name in (left, *right)]
    has_real = (Path(downstream_dir) / f"classifier-{REAL}.pkl").is_file()
    return list(dict.fromkeys(([REAL] if has_real else []) + named))


def _measures(aucs: np.ndarray, column: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Per-arm AUCs [..., arms] and, when the real arm is among them, every arm's skill ratio against it."""
    measures = {"auc": aucs}
    if REAL in column:
        measures["skill"] = np.vectorize(skill_ratio)(aucs, aucs[..., [column[REAL]]])
    return measures


def _difference(values: np.ndarray, column: Mapping[str, int], left: str, right: tuple[str, ...]) -> np.ndarray:
    """LEFT's column minus the mean of RIGHT's columns, for per-arm values [..., arms]."""
    return values[..., column[left]] - values[..., [column[name] for name in right]].mean(axis=-1)


def paired_differences(
    labels: np.ndarray,
    scores: Mapping[str, np.ndarray],
    comparisons: Sequence[Comparison],
    n_resamples: int,
    seed: int,
    groups: Groups = None,
) -> list[dict[str, Any]]:
    """AUC (and, with `scores[REAL]`, skill-ratio) differences LEFT - mean(RIGHT) with paired bootstrap intervals.

    A skill difference (interval) is None when the real arm is at or below chance on the test images (on a
    resample): the ratio is undefined there. `groups` (each image's study) makes the resamples whole studies.
    """
    labels = np.asarray(labels).astype(np.int64)
    column = {name: k for k, name in enumerate(scores)}

    def aucs(idx: np.ndarray) -> np.ndarray:
        return np.array([roc_auc(labels[idx], arm_scores[idx]) for arm_scores in scores.values()])

    def both_classes(idx: np.ndarray) -> bool:
        return 0 < labels[idx].sum() < len(idx)

    point = _measures(aucs(np.arange(len(labels))), column)
    resampled = _measures(bootstrap_values(aucs, len(labels), both_classes, n_resamples, seed, groups=groups), column)
    rows = []
    for left, right in comparisons:
        row: dict[str, Any] = dict(left=left, right=list(right), resampled=resampling_unit(groups))
        for key in point:
            value = float(_difference(point[key], column, left, right))
            spread = _difference(resampled[key], column, left, right)
            row[f"{key}_difference"] = None if np.isnan(value) else value
            row[f"{key}_ci"] = None if np.isnan(spread).any() else list(percentile_interval(spread))
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The differences as a Markdown table."""

    def cell(row: Mapping[str, Any], key: str) -> str:
        if f"{key}_difference" not in row:
            return ""
        if row[f"{key}_difference"] is None:
            return "undefined (the real arm is not above chance)"
        interval = "undefined" if row[f"{key}_ci"] is None else "{:+.3f} to {:+.3f}".format(*row[f"{key}_ci"])
        return f"{row[f'{key}_difference']:+.3f} ({interval})"

    lines = [
        "| left | minus the mean of | AUC difference (95% CI) | skill-ratio difference (95% CI) |",
        "| --- | --- | --- | --- |",
    ]

    def named(names: Sequence[str], described: Sequence[str] | None) -> str:
        """Arm names, each with what its images are when the row says (`left_is`, `right_is`)."""
        return ", ".join(names if described is None else [f"{n} ({d})" for n, d in zip(names, described)])

    lines += [
        f"| {named([row['left']], [row['left_is']] if 'left_is' in row else None)} | "
        f"{named(row['right'], row.get('right_is'))} | {cell(row, 'auc')} | {cell(row, 'skill')} |"
        for row in rows
    ]
    units = sorted({row.get("resampled", "images") for row in rows})
    lines += [
        "",
        f"Intervals: paired percentile bootstrap over test {' and '.join(units)}; one trained model per arm, "
        "so they do not cover training randomness.",
    ]
    return "\n".join(lines) + "\n"


def parse_comparisons(
    _ctx: click.Context, _param: click.Parameter, values: tuple[tuple[str, str], ...]
) -> list[Comparison]:
    """Click callback: repeated `--compare LEFT RIGHT[,RIGHT...]` -> [(left, (right, ...))]."""
    if not values:
        raise click.BadParameter("give at least one --compare LEFT RIGHT")
    parsed = []
    for left, right in values:
        rights = tuple(name.strip() for name in right.split(","))
        if not left or not all(rights) or left in rights:
            raise click.BadParameter(
                f"{left} {right}: expected two different arms, e.g. spinegan-pooled spinegan,spinegan-seed1"
            )
        parsed.append((left, rights))
    return parsed


@click.command()
@click.option(
    "--downstream",
    "downstream_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A downstream step's folder (classifier-<arm>.pkl files)",
)
@click.option("--test", "test_path", required=True, type=click.Path(exists=True), help="The test set it was scored on")
@click.option(
    "--compare",
    "comparisons",
    multiple=True,
    type=(str, str),
    callback=parse_comparisons,
    help="LEFT RIGHT: LEFT minus RIGHT (RIGHT may be a comma-separated list: their mean); repeatable",
)
@click.option("--n-resamples", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed (the downstream table's: 0)")
@click.option("--out", type=dnnlib.OutputPath(dir_okay=False), default=None, help="Also write the rows as JSON here")
def main(
    downstream_dir: str, test_path: str, comparisons: list[Comparison], n_resamples: int, seed: int, out: str | None
) -> None:
    """Paired test-set differences between downstream arms: AUC and skill ratio, with bootstrap intervals."""
    test = load_labelled_images(test_path)
    scores = arm_scores(downstream_dir, arms_to_score(downstream_dir, comparisons), test)
    rows = paired_differences(test.labels.numpy(), scores, comparisons, n_resamples, seed, test.study_ids)
    if out is not None:
        save_json(rows, out)
    click.echo(markdown_table(rows), nl=False)


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
