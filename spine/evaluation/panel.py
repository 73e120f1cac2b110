"""An evaluator panel: every arm scored by several downstream classifiers, the headline its lowest skill ratio.

    python -m spine.evaluation.panel --real-train=train.zip --synthetic=spinegan=synthetic.zip --test=test.zip \\
        --out=runs/panel --member densenet121:dataset --member resnet18:dataset --member small_cnn:dataset \\
        --member patch_cnn:blurred_image

A user asks whether a classifier of *theirs*, trained on synthetic images, works on real ones. One evaluator
answers for one classifier: images that teach a lesion-patch detector may not teach a ResNet. So each member (an
architecture and its input normalisation) trains on the real and on each synthetic training set under the identical
protocol (`spine.evaluation.downstream`, one folder per member), and the panel reports every member's skill ratio
beside the lowest, which is the headline: the figure a user can count on whichever member they resemble.

Intervals are paired percentile bootstraps over test studies (every member and arm scored on the same resamples,
so the interval of the lowest skill is that of the minimum itself, not of one member). Arms given as replicates of
one variant (generators trained with different seeds) are averaged per member, and their interval resamples the
seeds too (`hierarchical_values`): it then covers training randomness and the test draw.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

import dnnlib
from spine.classifier.artifact import INPUT_NORMS
from spine.classifier.data import load_labelled_images
from spine.classifier.models import ARCHITECTURES
from spine.evaluation.arms import REAL, Arm
from spine.evaluation.comparison import arm_scores
from spine.evaluation.downstream import (
    DownstreamOptions,
    finished_downstream,
    parse_named_datasets,
    run_downstream,
    skill_ratio,
)
from spine.evaluation.model_memo import ModelMemo
from spine.scoring import hierarchical_values, percentile_interval, resampling_unit, roc_auc, save_json


@dataclasses.dataclass(frozen=True)
class PanelMember:
    """One downstream classifier of the panel: an architecture and the pixel normalisation it trains with."""

    arch: str
    input_norm: str = "dataset"

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"panel member {self.arch!r}: expected an architecture among {list(ARCHITECTURES)}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(
                f"panel member {self.arch}:{self.input_norm}: expected a normalisation among {list(INPUT_NORMS)}"
            )

    @property
    def name(self) -> str:
        return f"{self.arch}:{self.input_norm}"

    @property
    def folder(self) -> str:
        return f"{self.arch}-{self.input_norm}"

    @classmethod
    def parse(cls, text: str) -> PanelMember:
        """'ARCH' or 'ARCH:NORM' (NORM defaults to 'dataset')."""
        arch, _, norm = text.partition(":")
        return cls(arch, norm or "dataset")


# The issue on evidence's panel: the paper's DenseNet-121, ResNet-18, the classifier CLI's default, the demo's
# lesion-patch detector.
FULL_PANEL = (
    PanelMember("densenet121"),
    PanelMember("resnet18"),
    PanelMember("small_cnn"),
    PanelMember("patch_cnn", "blurred_image"),
)


def train_panel(
    real_train: str,
    synthetic: Mapping[str, str],
    test_path: str,
    outdir: str,
    members: Sequence[PanelMember],
    options: DownstreamOptions,
    without_mixed: Collection[str] = (),
    workers: int = 1,
    memo: ModelMemo | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the downstream evaluation once per member, each in `outdir/<member>`, the protocol otherwise identical;
    `workers` models at a time, those `memo` keeps taken from it (`spine.evaluation.downstream.train_arms`). A
    member whose folder holds a finished run on the same datasets and options is not trained again: an interrupted
    panel (a DenseNet-121 member takes most of an hour in the benchmark) resumes at its first unfinished member."""
    results = {}
    for number, member in enumerate(members, 1):
        member_options = dataclasses.replace(options, arch=member.arch, input_norm=member.input_norm)
        folder = os.path.join(outdir, member.folder)
        done = finished_downstream(folder, real_train, synthetic, test_path, member_options, without_mixed)
        if done is not None:
            print(f"Panel member {number}/{len(members)}: {member.name} finished earlier, skipped", flush=True)
            results[member.name] = done
            continue
        print(f"Panel member {number}/{len(members)}: {member.name}", flush=True)
        results[member.name] = run_downstream(
            real_train, synthetic, test_path, folder, member_options, without_mixed, workers, memo
        )
    return results


def _aucs_per_resample(
    labels: np.ndarray,
    columns: list[np.ndarray],
    num_replicates: int,
    groups: Sequence | None,
    n_resamples: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point AUCs [C], resampled AUCs [R, C] and the replicates drawn per resample [R, num_replicates]; every column
    on the same resamples of the test studies, the replicates resampled too when there are several."""
    drawn: list[np.ndarray] = []

    def statistics(replicates: np.ndarray, idx: np.ndarray) -> np.ndarray:
        drawn.append(replicates)
        return np.array([roc_auc(labels[idx], scores[idx]) for scores in columns])

    def both_classes(idx: np.ndarray) -> bool:
        return 0 < labels[idx].sum() < len(idx)

    values = hierarchical_values(
        statistics,
        num_replicates,
        len(labels),
        both_classes,
        n_resamples,
        seed,
        groups=groups,
        resample_replicates=num_replicates > 1,
    )
    point = np.array([roc_auc(labels, scores) for scores in columns])
    return point, values, np.stack(drawn)


def panel_skill(
    labels: np.ndarray,
    scores: Mapping[str, Mapping[str, np.ndarray]],
    replicates: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    groups: Sequence | None = None,
) -> dict[str, Any]:
    """The panel's figures for one variant whose synthetic arms `replicates` (one per generator seed) every member
    scored: per member its real AUC, mean synthetic AUC and mean skill ratio; the lowest skill over members; each
    with a paired percentile interval over test studies, and over the seeds too when there are several.

    `scores[member][arm]` are test-set probabilities of the positive class, `REAL` among the arms.
    """
    members = list(scores)
    arms = [REAL, *replicates]
    columns = [np.asarray(scores[m][a], dtype=np.float64) for m in members for a in arms]
    index = np.arange(len(columns)).reshape(len(members), len(arms))
    point, values, drawn = _aucs_per_resample(
        np.asarray(labels).astype(np.int64), columns, len(replicates), groups, n_resamples, seed
    )

    def figures(aucs: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """[members, 3]: real AUC, mean synthetic AUC, mean skill over the drawn seeds."""
        real = aucs[index[:, 0]]
        synthetic = aucs[index[:, 1:][:, seeds]]
        skill = np.vectorize(skill_ratio)(synthetic, real[:, None])
        return np.stack([real, synthetic.mean(axis=1), skill.mean(axis=1)], axis=1)

    at_point = figures(point, np.arange(len(replicates)))
    resampled = np.stack([figures(row, seeds) for row, seeds in zip(values, drawn)])

    def interval(spread: np.ndarray) -> list[float] | None:
        return None if np.isnan(spread).any() else list(percentile_interval(spread))

    rows = {
        m: dict(
            real_auc=float(at_point[k, 0]),
            real_auc_ci=interval(resampled[:, k, 0]),
            synthetic_auc=float(at_point[k, 1]),
            synthetic_auc_ci=interval(resampled[:, k, 1]),
            skill=float(at_point[k, 2]),
            skill_ci=interval(resampled[:, k, 2]),
        )
        for k, m in enumerate(members)
    }
    lowest = int(np.nanargmin(at_point[:, 2])) if not np.isnan(at_point[:, 2]).all() else 0
    covers = f"test {resampling_unit(groups)}" + (" and generator seeds" if len(replicates) > 1 else "")
    return dict(
        members=rows,
        lowest_skill=float(np.min(at_point[:, 2])),
        lowest_member=members[lowest],
        lowest_skill_ci=interval(np.min(resampled[:, :, 2], axis=1)),
        replicates=list(replicates),
        interval_covers=covers,
        n_resamples=n_resamples,
        seed=seed,
    )


def _cell(value: float, ci: list[float] | None) -> str:
    return f"{value:.3f} " + ("(undefined)" if ci is None else f"({ci[0]:.3f}-{ci[1]:.3f})")


def markdown_table(variants: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per variant: the panel's lowest skill ratio first, then each member's skill (real AUC)."""
    members = list(next(iter(variants.values()))["members"])
    headers = " | ".join(f"{m}: skill (real AUC)" for m in members)
    lines = [
        f"| Variant | Lowest skill ratio (95% CI) | {headers} |",
        "| --- | --- | " + " | ".join("---" for _ in members) + " |",
    ]
    for name, panel in variants.items():
        cells = [f"{_cell(row['skill'], row['skill_ci'])} ({row['real_auc']:.3f})" for row in panel["members"].values()]
        lowest = f"**{_cell(panel['lowest_skill'], panel['lowest_skill_ci'])}** {panel['lowest_member']}"
        lines.append(f"| {name} | {lowest} | " + " | ".join(cells) + " |")
    covers = sorted({panel["interval_covers"] for panel in variants.values()})
    lines += [
        "",
        "Skill ratio = (AUC_syn - 0.5) / (AUC_real - 0.5), each member against its own real-trained model. "
        f"Intervals: paired percentile bootstrap over {'; '.join(covers)}, every member and arm on the same "
        "resamples; the lowest skill's interval is that of the minimum over members.",
    ]
    return "\n".join(lines) + "\n"


def _synthetic_key(generator: str) -> str:
    return Arm("synthetic", generator).key


def score_panel(
    folders: Mapping[str, str], test_path: str, variants: Mapping[str, Sequence[str]], n_resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Load every member's saved models ({member name: its downstream folder}) and compute `panel_skill` for each
    variant (its replicate arms)."""
    test = load_labelled_images(test_path)
    names = list(dict.fromkeys([REAL] + [_synthetic_key(a) for arms in variants.values() for a in arms]))
    scores = {member: arm_scores(folder, names, test) for member, folder in folders.items()}
    return {
        variant: panel_skill(
            test.labels.numpy(), scores, [_synthetic_key(a) for a in arms], n_resamples, seed, test.study_ids
        )
        for variant, arms in variants.items()
    }


def run_panel(
    real_train: str,
    synthetic: Mapping[str, str],
    test_path: str,
    outdir: str,
    members: Sequence[PanelMember],
    options: DownstreamOptions,
    variants: Mapping[str, Sequence[str]] | None = None,
    without_mixed: Collection[str] = (),
    workers: int = 1,
) -> dict[str, dict[str, Any]]:
    """Train and test every member on every arm (`workers` models at a time), then write panel.json and panel.md.
    `variants` groups synthetic datasets that are seeds of one generator configuration; by default each dataset is a
    variant of its own."""
    if not members:
        raise ValueError("an evaluator panel needs at least one member")
    variants = variants or {name: [name] for name in synthetic}
    train_panel(real_train, synthetic, test_path, outdir, members, options, without_mixed, workers)
    folders = {m.name: os.path.join(outdir, m.folder) for m in members}
    panel = score_panel(folders, test_path, variants, options.n_resamples, options.seed)
    write_panel(panel, outdir)
    return panel


def write_panel(panel: Mapping[str, Mapping[str, Any]], outdir: str) -> None:
    """panel.json (every figure) and panel.md (the table) in `outdir`."""
    members = list(next(iter(panel.values()))["members"])
    save_json(dict(members=members, variants=panel), os.path.join(outdir, "panel.json"))
    with dnnlib.atomic_write(os.path.join(outdir, "panel.md"), "w") as f:
        f.write(markdown_table(panel))


def holds_only_a_panel(out: Path, members: Sequence[PanelMember]) -> bool:
    """Whether `out` is new, empty, a finished panel's folder or an interrupted one's (only these members'
    folders, and the table of an earlier run): what the CLI may write into without touching anything else of the
    user's."""
    if not out.exists() or (out / "panel.json").is_file():
        return True
    return {p.name for p in out.iterdir()} <= {m.folder for m in members} | {"panel.md"}


def parse_members(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[PanelMember]:
    """Click callback: repeated --member ARCH[:NORM] -> members (the full panel when none is given)."""
    try:
        members = [PanelMember.parse(v) for v in values] or list(FULL_PANEL)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if len({m.name for m in members}) != len(members):
        raise click.BadParameter("a member is given twice")
    return members


@click.command()
@click.option("--real-train", required=True, type=click.Path(exists=True), help="Real training images (labelled)")
@click.option(
    "--synthetic",
    multiple=True,
    required=True,
    callback=parse_named_datasets,
    help="NAME=PATH of a synthetic dataset (repeatable)",
)
@click.option("--test", "test_path", required=True, type=click.Path(exists=True), help="Held-out real test images")
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False), help="Output folder (new)")
@click.option(
    "--member",
    "members",
    multiple=True,
    callback=parse_members,
    metavar="ARCH[:NORM]",
    help=f"A panel member (repeatable; default the full panel: {', '.join(m.name for m in FULL_PANEL)})",
)
@click.option("--epochs", type=click.IntRange(min=1), default=DownstreamOptions.epochs, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=DownstreamOptions.patience, show_default=True)
@click.option("--seed", type=dnnlib.SEED, default=DownstreamOptions.seed, show_default=True)
@click.option("--n-resamples", type=click.IntRange(min=1), default=DownstreamOptions.n_resamples, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Classifiers trained at a time, each in its own process on one thread (2 on 2 cores: more models a minute)",
)
def main(
    real_train: str,
    synthetic: dict[str, str],
    test_path: str,
    outdir: str,
    members: list[PanelMember],
    epochs: int,
    patience: int,
    seed: int,
    n_resamples: int,
    workers: int,
) -> None:
    """Score synthetic training sets with an evaluator panel; the headline is the lowest skill ratio."""
    if not holds_only_a_panel(Path(outdir), members):
        raise dnnlib.UserError(f"--out={outdir}: holds other files than an earlier panel's; give a new folder")
    options = DownstreamOptions(epochs=epochs, patience=patience, seed=seed, n_resamples=n_resamples)
    panel = run_panel(
        real_train, synthetic, test_path, outdir, members, options, without_mixed=set(synthetic), workers=workers
    )
    click.echo(markdown_table(panel))
    click.echo(f"-> {outdir}/panel.json, {outdir}/panel.md")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
