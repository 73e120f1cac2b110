"""A static HTML report of an experiment (spine.pipeline.experiment / spine.pipeline.demo): what was trained, how it
went, what the
synthetic images look like, how close they come to real ones, and what they are worth downstream.

    python -m spine.pipeline.report --experiment runs/demo          # writes runs/demo/report/index.html

Sections: headline, downstream tables (one per label mode), replicated arms over training seeds (means and the
clinical loss's effect paired by seed, with t-intervals), metrics, training curves (losses, augmentation p, clinical
loss, DP epsilon,
metrics over kimg, from stats.jsonl and metric-*.jsonl), sample grids per class beside real images at the same
scale with per-class mean and difference images, nearest real neighbours of samples (pixel distance: a
memorisation check, not a privacy guarantee), the privacy audit of each generator (a DP one against the bound of
its epsilon), and a model card. Plots are PNG files
beside index.html, drawn with matplotlib's object API (no global pyplot state).
"""

from __future__ import annotations

import glob
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
import PIL.Image
import torch

import dnnlib
from spine.data.preview import tile
from spine.evaluation.class_means import (
    REFERENCE,
    REFERENCE_HALVES,
    class_means,
    difference_correlation,
    labelled_dataset,
    load_means,
    plot_class_means,
    reference_ceiling,
    save_figure,
)
from spine.evaluation.downstream import exaggerated_arms, ratio_texts
from spine.evaluation.privacy_audit import nearest, stated_tpr_bound
from spine.pipeline import report_tables
from spine.pipeline.config import CLINICAL_LOSS_PAIR, ExperimentConfig
from spine.pipeline.seeds import format_interval, group_summaries, kimg_mismatch, paired_differences
from training.dataset import ImageFolderDataset

SECTIONS = (
    "Headline",
    "Downstream",
    "Training seeds",
    "Metrics",
    "Training curves",
    "Samples",
    "Nearest real neighbours",
    "Privacy audit",
    "Model card",
)
CURVES = (
    ("Loss/G/loss", "G adversarial loss"),
    ("Loss/D/loss", "D loss"),
    ("Loss/G/clinical", "clinical loss"),
    ("Progress/augment", "augment p"),
    ("Privacy/epsilon", "DP epsilon"),
)

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}
th{background:#f0f0f0}img{max-width:100%;image-rendering:pixelated}.note{color:#555;font-size:.9em}
.headline{font-size:1.15em;background:#f6f8fa;padding:.8em;border-left:4px solid #2a7}"""


# ----------------------------------------------------------------------------------------------------------------
# Reading an experiment folder.


def read_steps(outdir: Path) -> dict[str, dict[str, Any]]:
    """{step name: outputs} of every finished step."""
    steps = {}
    for marker in sorted((outdir / "steps").glob("*.json")):
        record = json.loads(marker.read_text())
        steps[record["step"]] = dict(record["outputs"], seconds=record["seconds"], finished=record.get("finished", 0.0))
    return steps


def read_stats(run_dirs: Sequence[str]) -> list[dict[str, Any]]:
    """stats.jsonl lines of a run and its continuations, in order."""
    lines = []
    for run_dir in run_dirs:
        path = os.path.join(run_dir, "stats.jsonl")
        if os.path.isfile(path):
            lines += [json.loads(line) for line in open(path) if line.strip()]
    return lines


def read_metric_lines(run_dirs: Sequence[str]) -> list[dict[str, Any]]:
    """metric-*.jsonl lines written during training, with the kimg of their snapshot."""
    lines = []
    for run_dir in run_dirs:
        for path in sorted(glob.glob(os.path.join(run_dir, "metric-*.jsonl"))):
            for line in open(path):
                entry = json.loads(line)
                digits = "".join(ch for ch in os.path.basename(entry.get("snapshot_pkl") or "") if ch.isdigit())
                entry["kimg"] = int(digits) if digits else None
                lines.append(entry)
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Figures.


def plot_curves(variant_stats: dict[str, list[dict]], variant_metrics: dict[str, list[dict]], path: Path) -> str | None:
    """One panel per statistic present in any run, one line per variant, against kimg."""
    from matplotlib.figure import Figure

    panels = [(key, title) for key, title in CURVES if any(key in s for st in variant_stats.values() for s in st)]
    metric_names = sorted({k for lines in variant_metrics.values() for e in lines for k in e["results"]})
    if not panels and not metric_names:
        return None
    count = len(panels) + len(metric_names)
    cols = min(3, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=90)
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name, stats in variant_stats.items():
            points = [(s["Progress/kimg"]["mean"], s[key]["mean"]) for s in stats if key in s and "Progress/kimg" in s]
            if points:
                ax.plot(*zip(*points), label=name, marker="." if len(points) < 30 else None)
        ax.set(title=title, xlabel="kimg")
        ax.legend(fontsize="small")
    for j, metric in enumerate(metric_names):
        ax = fig.add_subplot(rows, cols, len(panels) + j + 1)
        for name, lines in variant_metrics.items():
            points = [
                (e["kimg"], e["results"][metric]) for e in lines if metric in e["results"] and e["kimg"] is not None
            ]
            if points:
                ax.plot(*zip(*points), label=name, marker="o")
        ax.set(title=metric, xlabel="kimg")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def sample_grid(
    dataset_path: str, path: Path, per_class: int = 8, cell: int = 64, real_path: str | None = None
) -> tuple[str, list[str]]:
    """The first `per_class` synthetic images of each class, one row per class; with `real_path`, each class's row
    of synthetic images follows a row of that class's first real images, drawn at the same scale. Returns (file,
    row names)."""
    sources = [("synthetic", labelled_dataset(dataset_path))]
    if real_path is not None:
        sources.insert(0, ("real", labelled_dataset(real_path)))
    names = sources[-1][1][1]
    rows = [
        (f"{kind} {name}", dataset, np.flatnonzero(labels == k)[:per_class])
        for k, name in enumerate(names)
        for kind, (dataset, _, labels) in sources
    ]
    grid = PIL.Image.new("L", (per_class * cell, len(rows) * cell))
    for r, (_, dataset, picks) in enumerate(rows):
        for c, idx in enumerate(picks):
            grid.paste(tile(dataset[int(idx)][0], cell), (c * cell, r * cell))
    with dnnlib.atomic_write(path, "wb") as f:
        grid.save(f, format="png")
    return path.name, [name for name, _, _ in rows] if real_path is not None else names


def nearest_neighbours(
    synthetic_path: str, real_path: str, path: Path, num: int = 6, cell: int = 64
) -> tuple[str, list[float]]:
    """Pairs (sample, nearest real training image by pixel L2 distance), for `num` samples spread over classes.

    Returns the figure file and the root-mean-square pixel distances (0-255 scale) of each pair.
    """
    real = ImageFolderDataset(real_path)
    fake = ImageFolderDataset(synthetic_path)
    real_pixels = torch.from_numpy(np.stack([real[i][0] for i in range(len(real))]).reshape(len(real), -1))
    samples = [fake[int(idx)][0] for idx in np.linspace(0, len(fake) - 1, num).round().astype(int)]
    distance, best = nearest(torch.from_numpy(np.stack(samples).reshape(num, -1)), real_pixels)
    grid = PIL.Image.new("L", (2 * cell + 8, num * cell), color=255)
    for row, sample in enumerate(samples):
        grid.paste(tile(sample, cell), (0, row * cell))
        grid.paste(tile(real[int(best[row])][0], cell), (cell + 8, row * cell))
    with dnnlib.atomic_write(path, "wb") as f:
        grid.save(f, format="png")
    return path.name, [float(d) for d in distance / np.sqrt(real_pixels.shape[1])]


# ----------------------------------------------------------------------------------------------------------------
# HTML.


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def downstream_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for arm, row in results["models"].items():
        ci = row["auc_ci"]
        plain, skill = ("1.000", "1.000") if row["kind"] == "real" else ratio_texts(results["ratios"].get(arm))
        rows.append(
            [
                arm,
                f"{row['num_train']} / {row['num_val']}",
                _fmt(row.get("best_val_auc")),
                _fmt(row["auc"]),
                "n/a" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}",
                plain,
                skill,
            ]
        )
    return rows


def _chance_words(name: str, row: dict[str, Any]) -> str:
    """A sentence when a model's test AUC interval reaches 0.5, else nothing."""
    ci = row["auc_ci"]
    if ci is None:
        return f" The {name} model's AUC is undefined on this test set."
    return (
        ""
        if ci[0] > 0.5
        else (f" The {name} model is not above chance: its 95% interval ({ci[0]:.2f}-{ci[1]:.2f}) reaches 0.5.")
    )


def _exaggeration_words(arm: str, downstream: dict[str, Any]) -> str:
    """A sentence when a synthetic arm's own classes are far easier to separate than the real ones, else nothing."""
    if arm not in exaggerated_arms(downstream):
        return ""
    return (
        f" Its classes are easier to tell apart on its own images (validation AUC "
        f"{downstream['models'][arm]['best_val_auc']:.3f}) than real ones "
        f"({downstream['models']['real']['best_val_auc']:.3f}): the generator exaggerates the class difference."
    )


def panel_headline(panel: dict[str, Any]) -> list[str]:
    """The evaluator panel's lowest skill ratio per generator: the headline's first sentences when a panel ran."""
    parts = []
    for name, row in panel["variants"].items():
        ci = row["lowest_skill_ci"]
        interval = "interval undefined" if ci is None else f"95% CI {ci[0]:.2f}-{ci[1]:.2f}"
        parts.append(
            f"Evaluator panel ({len(panel['members'])} classifiers), {name}: lowest skill ratio "
            f"{row['lowest_skill']:.2f} ({interval}, over {row['interval_covers']}), by {row['lowest_member']}."
        )
    return parts


def headline(config: dict[str, Any], downstream: dict[str, Any] | None, panel: dict[str, Any] | None = None) -> str:
    """The evaluator panel's lowest skill ratio first (when a panel ran), then one sentence per generator of the
    downstream protocol: synthetic-only AUC against the real model's, the skill ratio and the plain ratio with their
    paired intervals, and in words which models are not above chance."""
    if downstream is None:
        return "Downstream evaluation has not run yet."
    real = downstream["models"]["real"]
    ci = real["auc_ci"]
    parts = [] if panel is None else panel_headline(panel)
    whose = "Classifier" if panel is None else "The downstream protocol's classifier,"
    parts += [
        f"{whose} trained on real images: test AUC {_fmt(real['auc'])}"
        + ("" if ci is None else f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})")
        + "."
        + _chance_words("real-data", real)
    ]
    for arm, ratio in downstream["ratios"].items():
        row = downstream["models"][arm]
        name = row["generator"]
        ci = row["auc_ci"]
        plain_ci = ratio["ratio_ci"]
        plain_interval = "interval undefined" if plain_ci is None else f"95% CI {plain_ci[0]:.2f}-{plain_ci[1]:.2f}"
        skill = ""
        if "skill" in ratio:
            skill_ci = ratio.get("skill_ci")
            skill = (
                f"skill ratio {ratio['skill']:.2f}"
                + (", interval undefined" if skill_ci is None else f", 95% CI {skill_ci[0]:.2f}-{skill_ci[1]:.2f}")
                + "; "
            )
        parts.append(
            f"Trained on {name} images only: AUC {_fmt(row['auc'])}"
            + ("" if ci is None else f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})")
            + f" ({skill}plain ratio to real {ratio['ratio']:.2f}, {plain_interval})."
            + _chance_words(f"{name}-only", row)
            + _exaggeration_words(arm, downstream)
        )
    parts.append(
        "Skill ratio = (AUC_syn - 0.5) / (AUC_real - 0.5): 0 at chance, 1 when synthetic images train as "
        "well as real ones; the plain ratio reads about 0.6 even for a model at chance."
    )
    data = "a seeded phantom (not patient data)" if config.get("source") is None else config["source"]
    longer = [v["name"] for v in config.get("variants", []) if v.get("kimg") not in (None, config["kimg"])]
    parts.append(
        f"Data: {data}; {config['resolution']}x{config['resolution']} pixels; {config['kimg']} kimg per GAN"
        + (f" ({', '.join(longer)}: its own kimg, in the model card)." if longer else ".")
    )
    return " ".join(parts)


def downstream_table(results: dict[str, Any]) -> str:
    return _table(
        [
            "training data",
            "train / val images",
            "val AUC (own data)",
            "test AUC",
            "95% CI",
            "AUC ratio to real (95% CI)",
            "skill ratio (95% CI)",
        ],
        downstream_rows(results),
    ) + (
        f"<p class='note'>Test: {results['test']['num_images']} held-out real images, opened only after every "
        f"model was final; epochs chosen on validation splits of each training source; percentile bootstrap "
        f"intervals over test {results['test'].get('resampled', 'images')}, the same resamples for every model and "
        f"ratio (paired); one trained model per row, so they do not cover training randomness.</p>"
    )


def seeds_section(steps: dict[str, dict], config: ExperimentConfig) -> str:
    """Replicated synthetic arms over their training seeds and the clinical loss's effect paired by seed."""
    down = steps.get("downstream")
    groups = group_summaries(down, config) if down is not None else {}
    if not groups:
        return "<p>No arm was trained with more than one seed.</p>"
    rows = [
        [name, group["num_seeds"], format_interval(group["auc"]), format_interval(group["skill"], 2)]
        for name, group in groups.items()
    ]
    parts = [
        _table(
            ["generator", "training seeds", "synthetic-only test AUC (95% t-interval)", "skill ratio (95% t-interval)"],
            rows,
        )
    ]
    num_pairs, effects = paired_differences(steps, config, *CLINICAL_LOSS_PAIR)
    mismatch = kimg_mismatch(config, *CLINICAL_LOSS_PAIR)
    if mismatch:
        parts.append(f"<p>The clinical loss at the final snapshots: not paired ({html.escape(mismatch)}).</p>")
    if effects:
        treated, control = CLINICAL_LOSS_PAIR
        parts.append(
            f"<h3>The clinical loss: {html.escape(treated)} minus {html.escape(control)}, paired by "
            f"training seed ({num_pairs} seeds)</h3>"
        )
        parts.append(
            _table(
                ["quantity", "mean difference (95% t-interval)"],
                [[label, format_interval(values, sign="+")] for label, values in effects.items()],
            )
        )
    parts.append(
        "<p class='note'>Student-t intervals over training seeds: the spread a new seed would see in the "
        "mean (the bootstrap intervals above cover the test draw only).</p>"
    )
    return "".join(parts)


def privacy_section(steps: dict[str, dict], names: Sequence[str]) -> str:
    """Each audited generator's membership inference and nearest-neighbour shares, DP ones against their bound."""
    rows = []
    for name in names:
        audit = steps.get(f"privacy/{name}")
        if audit is None:
            continue
        bound = stated_tpr_bound(audit.get("privacy"))
        for space, figures in audit["spaces"].items():
            rows.append(
                [
                    name,
                    space,
                    _fmt(figures["mia_auc"]),
                    _fmt(figures["mia_tpr_at_1pct_fpr"]),
                    "no DP guarantee" if bound is None else f"{bound:.4f}",
                    _fmt(figures["share_closer_to_train"], 2),
                ]
            )
        inversion = audit.get("inversion")
        if inversion:
            rows.append(
                [
                    name,
                    f"inversion ({inversion['num_per_set']} per set, {inversion['steps']} steps)",
                    _fmt(inversion["mia_auc"]),
                    _fmt(inversion["mia_tpr_at_1pct_fpr"]),
                    "no DP guarantee" if bound is None else f"{bound:.4f}",
                    "-",
                ]
            )
    if not rows:
        return "<p>No privacy audit in this experiment.</p>"
    return _table(
        [
            "generator",
            "feature space",
            "membership-inference AUC",
            "TPR at 1% FPR",
            "most TPR its epsilon allows",
            "share closer to training than held-out",
        ],
        rows,
    ) + (
        "<p class='note'>Members: the generator's training images; non-members: the held-out test images. "
        "Chance: AUC 0.5, TPR 0.01, share 0.5. Attack: distance to the nearest generated image; inversion rows: "
        "the distance at which the generator reconstructs the image by latent optimisation (white-box).</p>"
    )


def dp_card(config: dict[str, Any]) -> str:
    """The model card's DP item: what the epsilon of a --dp variant covers, with or without DP-trained judges."""
    default = config.get("dp_judge_epsilon")
    private = [v for v in config.get("variants", ()) if "--dp=1" in v["train_args"]]
    judges = sorted({v.get("dp_judge_epsilon") or default for v in private} - {None}) if private else [default]
    judges = [e for e in judges if e]
    covered = (
        "It also covers the clinical loss's judge of those variants, trained with DP-SGD at epsilon "
        f"{' / '.join(f'{e:g}' for e in judges)}{' (per variant)' if len(judges) > 1 else ''} on the same images "
        "and composed into the one epsilon. It does not cover the metrics' classifier, "
        if judges
        else "It does not cover the classifier of the clinical loss (trained on the same images without DP), "
    )
    public = (
        "A variant with --dp-data-public=1 trains G and D on public images (another phantom draw's normal studies): "
        "its DP judge is its only access to the private images, so the judge's epsilon is its whole account. "
        if any("--dp-data-public=1" in v["train_args"] for v in private)
        else ""
    )
    return (
        "<b>Differential privacy</b>: where a variant uses --dp, DP-SGD protects the discriminator's use of each "
        "training image (epsilon, delta in the curves and snapshot metadata). "
        + public
        + covered
        + "the metrics and model selection on the training images, reals.png, the hyper-parameter choices, or the "
        "validation split; a variant without --dp has no formal privacy guarantee at all."
    )


def model_card(config: dict[str, Any], steps: dict[str, dict]) -> str:
    """What the generators are, were trained on, are for, and what they do not promise."""
    variants = config["variants"]
    rows = []
    for v in variants:
        trained = steps.get(f"train/{v['name']}", {})
        dp = [a for a in v["train_args"] if a.startswith("--dp")]
        rows.append(
            [
                v["name"],
                config["gan_cfg"],
                v.get("kimg") or config["kimg"],
                v["clinical_weight"] or "none",
                " ".join(dp) or "none",
                os.path.basename(trained.get("snapshot", "not trained yet")),
            ]
        )
    data = (
        "a seeded VinDr-SpineXR-shaped phantom made by spine.phantom: synthetic anatomy, no patient data"
        if config.get("source") is None
        else f"VinDr-SpineXR-layout data at {config['source']}"
    )
    items = [
        f"<b>Data</b>: {html.escape(data)}; labels '{html.escape(config['labels'])}' (0 normal, 1 abnormal); images "
        f"center-cropped and resized to {config['resolution']} px; study-level split of the official train split for "
        f"validation; the official test split is used only for the final downstream evaluation.",
        "<b>Clinical loss</b>: weight x BCE of a frozen spine classifier (trained on the same training images, "
        "chosen on validation) on each generated image against its conditioning label "
        "(Schonfeld &amp; Veeravagu 2022).",
        dp_card(config),
        "<b>Intended use</b>: research on synthetic learning and on the method itself; augmenting or replacing "
        "training data for classifiers that are then validated on real, held-out data.",
        "<b>Not for</b>: diagnosis, clinical decisions, or as evidence about any patient. Samples can look plausible "
        "and be anatomically wrong; labels of samples are only as reliable as the conditioning (see label fidelity).",
        "<b>Limits</b>: small models and short training in the demo; FID on few samples is biased upward; nearest "
        "neighbours by pixel distance detect copies, not every kind of memorisation.",
    ]
    if config.get("synth_local_difference") is not None:
        items.append(
            f"<b>Synthesis</b>: each abnormal image is its latent's normal rendering plus the strongest "
            f"{config['synth_local_difference']:.0%} of the pixels of the class difference (the latent rendered as "
            f"abnormal minus as normal; spine.evaluation.local_difference), so that the classes differ where lesions "
            f"are, not image-wide; normal images are drawn as they are."
        )
    if config.get("synth_twins"):
        items.append(
            "<b>Synthesis</b>: twins: each latent is rendered once in every class (the same seeds in each), so a "
            "normal image and its abnormal twin differ by their class alone; twins share a study id, so a "
            "classifier's study-level validation split keeps them together."
        )
    items += [
        f"<b>Pooled arm {html.escape(pool['name'])}</b>: no generator of its own; the synthetic images of "
        f"{html.escape(', '.join(pool['members']))} together, as one downstream training set."
        for pool in config.get("pools", [])
    ]
    return (
        _table(["variant", "preset", "kimg", "clinical loss", "DP options", "snapshot"], rows)
        + "<ul>"
        + "".join(f"<li>{item}</li>" for item in items)
        + "</ul>"
    )


def panel_section(panel: dict[str, Any]) -> str:
    """The panel's table: per generator (or arm over its seeds) the lowest skill ratio, then each member's."""
    members = panel["members"]
    rows = []
    for name, row in panel["variants"].items():
        lowest = row["lowest_skill_ci"]
        cells = [f"{f['skill']:.2f} (real {f['real_auc']:.3f})" for f in row["members"].values()]
        rows.append(
            [
                name,
                f"{row['lowest_skill']:.2f}" + ("" if lowest is None else f" ({lowest[0]:.2f}-{lowest[1]:.2f})"),
                row["lowest_member"],
                *cells,
            ]
        )
    covers = sorted({row["interval_covers"] for row in panel["variants"].values()})
    return (
        _table(["generator", "lowest skill ratio (95% CI)", "lowest member", *members], rows)
        + f"<p>Each member (architecture:normalisation) trained on the real and on each synthetic training set "
        f"under one protocol; skill ratio = (AUC_syn - 0.5) / (AUC_real - 0.5) against the member's own "
        f"real-trained model. Intervals: paired percentile bootstrap over {html.escape('; '.join(covers))}."
        f"</p>"
    )


def arms_note(config: ExperimentConfig) -> str:
    """What the pooled, matched, long-generator and other-length arms' images are, and which rows compare with the
    paper."""
    from spine.pipeline.arms import describe_arm

    special = [p.name for p in config.pools] + [p.matched_name for p in config.pools if config.pool_matched]
    special += [p.long_generator for p in config.pools if p.long_generator is not None]
    special += [
        v.name
        for v in config.variants
        if (config.kimg_of(v) != config.kimg or config.synth_snapshots_of(v) > 1) and v.name not in special
    ]
    if not special:
        return ""
    items = "; ".join(f"{name}: {describe_arm(config, name)}" for name in special)
    return (
        f"<p class='note'>Arms that are not the final snapshot of one generator of {config.kimg} kimg: "
        f"{html.escape(items)}. The paper's "
        f"figures (synthetic-only 0.830 against real 0.886 on VinDr-SpineXR) are one generator's: compare them "
        f"with the single-generator rows.</p>"
    )


def matched_section(matched: dict[str, Any]) -> str:
    """The pools against their matched arms: at one generator's image count, and one generator of their kimg."""
    rows = []
    for row in matched["rows"]:
        auc, skill = (
            "undefined"
            if row.get(f"{key}_difference") is None
            else f"{row[f'{key}_difference']:+.3f}"
            + ("" if row[f"{key}_ci"] is None else " ({:+.3f} to {:+.3f})".format(*row[f"{key}_ci"]))
            for key in ("auc", "skill")
        )
        right = ", ".join(f"{n} ({d})" for n, d in zip(row["right"], row["right_is"]))
        rows.append([f"{row['left']} ({row['left_is']})", right, auc, skill])
    return _table(["arm", "minus the mean of", "AUC difference (95% CI)", "skill-ratio difference (95% CI)"], rows) + (
        "<p class='note'>Paired percentile bootstrap over test studies (every arm on the same resamples, the "
        "downstream protocol's classifier); one trained model per arm, so they do not cover training randomness. A "
        "pool against its matched arm is the effect of its image count alone; the matched arm against the members' "
        "mean is the effect of variety at one count; the pool against the long generator compares equal "
        "kimg.</p>"
    )


def plot_curve(summary: dict[str, Any], steps: dict[str, dict], config: ExperimentConfig, path: Path) -> str | None:
    """One panel per curve figure against kimg: a thin line per generator seed, a thick one per arm's mean."""
    from matplotlib.figure import Figure

    from spine.pipeline.seeds import seeds_of

    figures = summary["figures"]
    if not figures:
        return None
    cols = min(3, len(figures))
    rows = -(-len(figures) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=90)
    for i, figure in enumerate(figures):
        ax = fig.add_subplot(rows, cols, i + 1)
        for number, (name, means) in enumerate(summary["means"].items()):
            colour = f"C{number}"
            for arm in seeds_of(config, name):
                points = steps.get(f"curve/{arm.variant}", {}).get("points", [])
                xy = [(p["kimg"], p["figures"][figure]) for p in points if figure in p["figures"]]
                if xy:
                    ax.plot(*zip(*xy), color=colour, alpha=0.35, linewidth=0.8)
            ax.plot(
                summary["kimg"],
                [np.nan if means[str(k)].get(figure) is None else means[str(k)][figure] for k in summary["kimg"]],
                color=colour,
                marker="o",
                label=name,
            )
        ax.set(title=figure, xlabel="kimg")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def curve_section(curve: dict[str, Any], steps: dict[str, dict], config: ExperimentConfig, reportdir: Path) -> str:
    """The clinical loss and training speed: figures against kimg, paired by seed, and kimg-to-threshold."""
    from spine.pipeline.curve import format_difference

    summary = curve["summary"]
    arms = list(summary["means"])
    rows = []
    for figure in summary["figures"]:
        for k in summary["kimg"]:
            diff = summary.get("differences", {}).get(str(k), {}).get(figure)
            rows.append(
                [figure, k]
                + [_fmt(summary["means"][a][str(k)].get(figure)) for a in arms]
                + ([format_difference(diff)] if "differences" in summary else [])
            )
    pair = summary.get("pair")
    header = ["figure", "kimg"] + [f"{a} (mean over seeds)" for a in arms]
    header += [f"{pair['treated']} minus {pair['control']}, paired by seed (95% t-interval)"] if pair else []
    parts = [_table(header, rows)]
    image = plot_curve(summary, steps, config, reportdir / "curve.png")
    if image:
        parts.append(f"<img src='{image}' alt='figures against kimg'>")
    thresholds = summary.get("to_threshold", {})
    if thresholds:
        threshold_rows = [
            [
                f"{figure} {row['direction']} {row['threshold']:g}",
                "; ".join(f"seed {s}: {r['treated']} / {r['control']}" for s, r in row["per_seed"].items()),
                format_difference(row["difference"], 1),
            ]
            for figure, row in thresholds.items()
        ]
        parts.append(
            _table(
                [
                    "kimg to threshold",
                    f"per seed: {pair['treated']} / {pair['control']} (None: not reached)",
                    "paired difference, kimg",
                ],
                threshold_rows,
            )
        )
    parts.append(f"<p class='note'>Intervals: {html.escape(summary['covers'])}.</p>")
    return "".join(parts)


_FIDELITY_HEADER = ["variant", "metric", "compares", "value", "real vs real (same sizes)", "value / real"]


def _fidelity_rows(steps: dict[str, dict], step: str, label: str, config: dict[str, Any]) -> list[list[str]]:
    """The metrics table's rows of one metrics step (labelled `label`), each beside its real-vs-real baseline, then
    the metrics it could not compute."""
    rows = report_tables.fidelity_rows(
        label,
        steps.get(step, {}).get("results", {}),
        steps.get("metrics/real-vs-real", {}).get("results", {}),
        "half-B training" if config.get("judge_half") else "training",
    )
    for key, error in sorted(steps.get(step, {}).get("errors", {}).items()):
        rows.append([label, key, "", f"not computed: {error}", "", ""])
    return rows


def _metric_rows(steps: dict[str, dict], name: str, config: dict[str, Any]) -> list[list[str]]:
    """A variant's metrics: its final snapshot's, then, for a trajectory pool, those of the pool's own images."""
    rows = _fidelity_rows(steps, f"metrics/{name}", name, config)
    if f"set-metrics/{name}" in steps:
        pooled = len(steps[f"synthesize/{name}"]["snapshots"])
        rows += _fidelity_rows(steps, f"set-metrics/{name}", f"{name}: the {pooled} snapshots' images", config)
    return rows


def judge_note(config: dict[str, Any], steps: dict[str, dict]) -> str:
    """Who the independent judge is and what it saw."""
    judge = config.get("judge") or f"{config['classifier_arch']}:{config['classifier_input_norm']}"
    seen = (
        f"half A of the training studies ({steps['data/judge-halves']['sizes']['a']} images); its feature-space "
        f"metrics compare with half B ({steps['data/judge-halves']['sizes']['b']} images), which it never saw"
        if "data/judge-halves" in steps
        else "the same training images as the clinical judge"
    )
    return (
        f"independent_*: judged by a second classifier that no generator was trained against ({judge}, seed + 1, "
        f"trained on {seen}; validation AUC {_fmt(steps['judge']['best_val_auc'])})."
    )


def saved_class_means(steps: dict[str, dict]) -> dict[str, dict[str, np.ndarray]]:
    """The class means the `class-means` step saved ({} when it did not run, or ran before it saved them)."""
    path = steps.get("class-means", {}).get("means")
    return load_means(path) if path and os.path.exists(path) else {}


def class_means_section(
    name: str, fake_means: dict[str, np.ndarray], real_means: dict[str, Any], steps: dict[str, dict], reportdir: Path
) -> str:
    """The class means of `name`'s images beside the real ones (the class-mean reference's when the experiment has
    one, else the training images'), with the class-mean figures."""
    if set(fake_means) != set(real_means) or len(real_means) < 2:
        return ""
    figure = plot_class_means(real_means, fake_means, reportdir / f"class-means-{name}.png")
    figures = steps.get("class-means", {}).get("figures", {})
    if name in figures:
        ours, train, test = figures[name], figures["real training images"], figures["real test images"]
        reference = steps["data/class-reference"]
        halves = figures.get(REFERENCE_HALVES)  # absent in runs made before it was measured
        ceiling = (
            ""
            if halves is None
            else f"; two halves of the population's images against each other: {_fmt(halves['r'], 2)}, so a "
            f"generator drawing the population's class difference exactly would read about "
            f"{_fmt(reference_ceiling(halves['r']), 2)} against the whole"
        )
        text = (
            f"Per-class mean images of {reference['images']:,} fresh phantom images of this kind (draw "
            f"{reference['seed']}, the "
            f"population's class means; top) and of {html.escape(name)}'s {ours['images']:,} images (bottom). "
            f"Against the population: class difference r = {_fmt(ours['r'], 2)} (the real training images' "
            f"{train['images']:,}: {_fmt(train['r'], 2)}; the test split's {test['images']:,}: {_fmt(test['r'], 2)}"
            f"{ceiling}), "
            f"its RMS ratio {_fmt(ours['rms_ratio'], 2)} (training {_fmt(train['rms_ratio'], 2)}), and the class "
            f"means' detail ratio {_fmt(ours['detail_ratio'], 2)} (training {_fmt(train['detail_ratio'], 2)}): "
            f"real radiographs at many poses average to a blur, so a generator drawing few poses keeps sharp "
            f"anatomy in its mean and reads well above 1."
        )
    else:
        text = (
            f"Per-class mean images, real (top) and {html.escape(name)} (bottom), and the class difference: where "
            f"the classes differ on average. Correlation of the two difference maps r = "
            f"{_fmt(difference_correlation(real_means, fake_means), 2)} over every synthetic and training image (1: "
            f"the generator's classes differ where real ones do; class_diff metrics give it at a test split's size "
            f"beside two real samples' value)."
        )
    return f"<p class='note'>{text}</p><img src='{figure}' alt='class means of {html.escape(name)}'>"


def write_experiment_report(outdir: str | Path, reportdir: str | Path | None = None) -> Path:
    """Write <reportdir>/index.html (default <outdir>/report) and its figures; returns the HTML path."""
    outdir = Path(outdir)
    reportdir = Path(reportdir) if reportdir is not None else outdir / "report"
    reportdir.mkdir(parents=True, exist_ok=True)
    config = json.loads((outdir / "config.json").read_text())
    steps = read_steps(outdir)
    names = [v["name"] for v in config["variants"]]
    downstream = None
    if "downstream" in steps:
        downstream = json.loads(Path(steps["downstream"]["json"]).read_text())
    summary = headline(config, downstream, steps.get("panel"))
    body = [
        f"<h1>SpineGAN experiment: {html.escape(outdir.name)}</h1>",
        f"<h2 id='headline'>Headline</h2><p class='headline'>{html.escape(summary)}</p>",
    ]
    if "panel" in steps:
        body.append("<h2 id='evaluator-panel'>Evaluator panel</h2>" + panel_section(steps["panel"]))
    if "provenance" in steps:
        version = steps["provenance"]
        body.append(
            f"<p>Code {html.escape(str(version['commit'] or 'outside git'))}"
            f"{' (modified)' if version['modified'] else ''}; config sha256 "
            f"{html.escape(version['config_sha256'])}; seed {version['seed']}, phantom draw "
            f"{version['phantom_seed']}.</p>"
        )

    body.append("<h2 id='downstream'>Downstream</h2>")
    if downstream is not None:
        body.append(downstream_table(downstream))
    for key in sorted(k for k in steps if k.startswith("downstream-")):
        body.append(f"<h3>{html.escape(key.removeprefix('downstream-'))} labels (macro-AUC over classes)</h3>")
        body.append(downstream_table(json.loads(Path(steps[key]["json"]).read_text())))
    typed = ExperimentConfig.from_dict(config, where=str(outdir / "config.json"))
    body.append(arms_note(typed))
    if "matched" in steps:
        body.append("<h2 id='matched-comparisons'>Matched comparisons</h2>" + matched_section(steps["matched"]))
    body.append("<h2 id='training-seeds'>Training seeds</h2>" + seeds_section(steps, typed))
    if "curve" in steps:
        body.append(
            "<h2 id='clinical-loss-and-training-speed'>Clinical loss and training speed</h2>"
            + curve_section(steps["curve"], steps, typed, reportdir)
        )

    body.append("<h2 id='metrics'>Metrics</h2>")
    metric_rows = []
    for name in names:
        metric_rows += _metric_rows(steps, name, config)
    for key, error in sorted(steps.get("metrics/real-vs-real", {}).get("errors", {}).items()):
        metric_rows.append(["real vs real", key, "", f"not computed: {error}", "", ""])
    body.append(_table(_FIDELITY_HEADER, metric_rows) if metric_rows else "<p>No metrics yet.</p>")
    body.append(f"<p class='note'>{html.escape(report_tables.fid_note(config.get('metrics', [])))}</p>")
    if "classifier" in steps:
        body.append(
            f"<p class='note'>Spine classifier (clinical loss, spine-feature metrics): validation AUC "
            f"{_fmt(steps['classifier']['best_val_auc'])} at epoch {steps['classifier']['best_epoch']}.</p>"
        )
    if "judge" in steps:
        body.append(f"<p class='note'>{html.escape(judge_note(config, steps))}</p>")

    body.append("<h2 id='training-curves'>Training curves</h2>")
    run_dirs = {n: steps[f"train/{n}"]["run_dirs"] for n in names if f"train/{n}" in steps}
    curves = plot_curves(
        {n: read_stats(d) for n, d in run_dirs.items()},
        {n: read_metric_lines(d) for n, d in run_dirs.items()},
        reportdir / "curves.png",
    )
    body.append(f"<img src='{curves}' alt='training curves'>" if curves else "<p>No training statistics yet.</p>")

    body.append("<h2 id='samples'>Samples</h2>")
    train_zip = steps.get("data/train", {}).get("dataset")
    reference = steps.get("data/class-reference", {}).get("dataset")
    saved = saved_class_means(steps)
    real_means = None
    if train_zip is not None:
        real_means = saved.get(REFERENCE) or class_means(reference or train_zip, None if reference else 2000)
    for name in names:
        synthetic = steps.get(f"synthesize/{name}", {}).get("dataset")
        if synthetic is None:
            continue
        grid, rows = sample_grid(synthetic, reportdir / f"samples-{name}.png", real_path=train_zip)
        body.append(
            f"<h3>{html.escape(name)}</h3><p class='note'>rows: {html.escape(', '.join(rows))} (real "
            f"training images and generated ones at the same scale)</p>"
            f"<img src='{grid}' alt='samples of {html.escape(name)} beside real images'>"
        )
        beside = [row for row in _metric_rows(steps, name, config) if row[4]]
        if beside:
            body.append(
                "<p class='note'>Fidelity of these samples, each beside two real samples' value at the same sizes "
                "(the test split against the training images; from the metrics table):</p>"
                + _table(_FIDELITY_HEADER, beside)
            )
        if real_means is not None:
            fake_means = saved.get(name) or class_means(synthetic, None)
            body.append(class_means_section(name, fake_means, real_means, steps, reportdir))

    body.append("<h2 id='nearest-real-neighbours'>Nearest real neighbours</h2>")
    for name in names:
        synthetic = steps.get(f"synthesize/{name}", {}).get("dataset")
        if synthetic is None or train_zip is None:
            continue
        pairs, distances = nearest_neighbours(synthetic, train_zip, reportdir / f"neighbours-{name}.png")
        body.append(
            f"<h3>{html.escape(name)}</h3><p class='note'>left: sample; right: closest training image "
            f"(RMS pixel distance {', '.join(f'{d:.1f}' for d in distances)} on 0-255). Near-zero distances "
            f"would mean copies.</p><img src='{pairs}' alt='nearest neighbours of {html.escape(name)}'>"
        )

    body.append("<h2 id='privacy-audit'>Privacy audit</h2>" + privacy_section(steps, names))
    body.append("<h2 id='model-card'>Model card</h2>" + model_card(config, steps))
    body.append("<h3>Step timings</h3>" + _table(["step", "time"], report_tables.timing_rows(steps)))
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>SpineGAN report: "
        f"{html.escape(outdir.name)}</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
    path = reportdir / "index.html"
    with dnnlib.atomic_write(path, "w") as f:
        f.write(page)
    return path


@click.command()
@click.option(
    "--experiment",
    "outdir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Experiment folder (spine.pipeline.experiment / spine.pipeline.demo)",
)
@click.option(
    "--out",
    "reportdir",
    type=dnnlib.OutputPath(file_okay=False),
    default=None,
    help="Report folder [default: <experiment>/report]",
)
def main(outdir: str, reportdir: str | None) -> None:
    """Write the HTML report of an experiment."""
    if not os.path.isfile(os.path.join(outdir, "config.json")):
        raise dnnlib.UserError(f"--experiment={outdir}: no config.json; not a spine.pipeline.experiment folder")
    click.echo(f"Report: {write_experiment_report(outdir, reportdir)}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
