"""spine.pipeline.curve: figures against kimg paired by training seed, kimg-to-threshold, snapshots chosen by kimg."""

import dataclasses

import numpy as np
import pytest
import scipy.stats

from spine.pipeline import curve
from spine.pipeline.config import ExperimentConfig, Variant

PAIR = (Variant("stylegan2-ada"), Variant("spinegan", 0.1))
CONFIG = ExperimentConfig(
    variants=PAIR + tuple(dataclasses.replace(v, name=f"{v.name}-seed{s}", seed=s) for s in (1, 2) for v in PAIR),
    curve_kimg=(10, 20),
    curve_metrics=("pr2k3_spine", "fid8_spine"),
    curve_thresholds={"pr2k3_spine_recall": 0.3, "fid8_spine": 5.0, "skill/small_cnn:dataset": 2.0},
)
# recall and FID per (arm, seed) at 10 and 20 kimg; SpineGAN's recall is plain's + 0.1 * (seed + 1)
RECALL = {("stylegan2-ada", s): (0.1, 0.2) for s in (0, 1, 2)}
RECALL.update({("spinegan", s): (0.1 + 0.1 * (s + 1), 0.2 + 0.1 * (s + 1)) for s in (0, 1, 2)})
FID = {("stylegan2-ada", s): (9.0, 6.0) for s in (0, 1, 2)}
FID.update({("spinegan", 0): (4.0, 3.0), ("spinegan", 1): (8.0, 4.0), ("spinegan", 2): (6.0, 6.0)})


def steps() -> dict:
    out = {}
    for (arm, seed), recalls in RECALL.items():
        name = arm if seed == 0 else f"{arm}-seed{seed}"
        out[f"curve/{name}"] = dict(
            points=[
                dict(kimg=k, figures={"pr2k3_spine_recall": r, "fid8_spine": f, "skill/small_cnn:dataset": 0.5})
                for k, r, f in zip((10, 20), recalls, FID[(arm, seed)])
            ]
        )
    return out


def test_the_curve_scores_every_seed_of_the_pair():
    assert [v.name for v in curve.curve_variants(CONFIG)] == [v.name for v in CONFIG.variants]
    assert curve.curve_variants(dataclasses.replace(CONFIG, curve_kimg=())) == []
    only_plain = dataclasses.replace(CONFIG, curve_arms=("stylegan2-ada",))
    assert [v.name for v in curve.curve_variants(only_plain)] == [
        "stylegan2-ada",
        "stylegan2-ada-seed1",
        "stylegan2-ada-seed2",
    ]


def test_differences_are_paired_by_seed_with_student_t_intervals():
    summary = curve.summarize_curve(steps(), CONFIG)
    assert summary["pair"] == dict(treated="spinegan", control="stylegan2-ada", seeds=[0, 1, 2])
    assert summary["means"]["spinegan"]["20"]["pr2k3_spine_recall"] == pytest.approx(0.4, abs=1e-12)
    row = summary["differences"]["10"]["pr2k3_spine_recall"]
    differences = np.array([0.1, 0.2, 0.3])  # float64 reference: mean 0.2, sd 0.1, t(0.975, 2)
    half = scipy.stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    assert row["num_pairs"] == 3
    assert (row["mean"], row["low"], row["high"]) == pytest.approx((0.2, 0.2 - half, 0.2 + half), abs=1e-12)
    assert summary["differences"]["20"]["skill/small_cnn:dataset"]["mean"] == 0.0
    assert "training randomness" in summary["covers"] and "not resampled" in summary["covers"]


def test_kimg_to_threshold_per_seed_and_paired_lower_is_better_for_fid():
    summary = curve.summarize_curve(steps(), CONFIG)
    recall = summary["to_threshold"]["pr2k3_spine_recall"]
    # SpineGAN reaches recall 0.3 at 20, 10, 10 kimg (seeds 0-2: 0.2/0.3, 0.3/0.4, 0.4/0.5); plain never (0.2 at most)
    assert recall["per_seed"] == {str(s): dict(treated=k, control=None) for s, k in zip((0, 1, 2), (20, 10, 10))}
    assert recall["difference"]["num_pairs"] == 0 and recall["direction"] == "at or above"
    fid = summary["to_threshold"]["fid8_spine"]  # reached at or below 5.0
    assert fid["direction"] == "at or below"
    assert fid["per_seed"] == {
        "0": dict(treated=10, control=None),
        "1": dict(treated=20, control=None),
        "2": dict(treated=None, control=None),
    }
    assert summary["to_threshold"]["skill/small_cnn:dataset"]["difference"]["num_pairs"] == 0  # nobody reaches 2.0
    lowered = dataclasses.replace(CONFIG, curve_thresholds={"fid8_spine": 6.0})
    both = curve.summarize_curve(steps(), lowered)["to_threshold"]["fid8_spine"]
    # SpineGAN 10, 20, 10 against plain 20, 20, 20: -10, 0, -10 kimg
    assert both["difference"]["num_pairs"] == 3 and both["difference"]["mean"] == pytest.approx(-20 / 3, abs=1e-12)
    text = curve.markdown_table(summary)
    assert "| pr2k3_spine_recall | 10 |" in text and "seed 2: 10 against not reached" in text


def test_the_curve_keeps_each_metrics_overall_figures():
    results = dict(
        label_fidelity500_auc=0.9,
        label_fidelity500_accuracy=0.8,
        label_fidelity500_normal_auc=0.9,
        independent_label_fidelity500_auc=0.85,
        independent_label_fidelity500_abnormal_accuracy=0.7,
        pr2k3_spine_precision=0.5,
        pr2k3_spine_recall=0.2,
        fid2k_spine=7.5,
        fid2k_spine_perclass_abnormal=9.0,
        num_images=1000,
        some_registry_metric=0.3,  # a name this code cannot parse is kept
    )
    assert curve.overall_figures(results) == dict(
        label_fidelity500_auc=0.9,
        label_fidelity500_accuracy=0.8,
        independent_label_fidelity500_auc=0.85,
        pr2k3_spine_precision=0.5,
        pr2k3_spine_recall=0.2,
        fid2k_spine=7.5,
        some_registry_metric=0.3,
    )


def test_the_snapshot_at_a_kimg_and_the_last_snapshots_over_continued_runs(tmp_path):
    first, second = tmp_path / "00000-run", tmp_path / "00001-run"
    for run, kimgs in ((first, ("000000", "000005")), (second, ("000010", "000015.500"))):
        run.mkdir()
        for kimg in kimgs:
            (run / f"network-snapshot-{kimg}.pkl").write_bytes(b"")
    assert curve.snapshot_at([str(first), str(second)], 5) == (str(first / "network-snapshot-000005.pkl"), 5.0)
    assert curve.snapshot_at([str(first), str(second)], 11) == (str(second / "network-snapshot-000015.500.pkl"), 15.5)
    with pytest.raises(
        RuntimeError, match=r"no network snapshot at or after 16 kimg \(kept: \[0.0, 5.0, 10.0, 15.5\]\)"
    ):
        curve.snapshot_at([str(first), str(second)], 16)
    assert curve.last_snapshots([str(first), str(second)], 3) == [
        str(first / "network-snapshot-000005.pkl"),
        str(second / "network-snapshot-000010.pkl"),
        str(second / "network-snapshot-000015.500.pkl"),
    ]
    with pytest.raises(RuntimeError, match=r"5 snapshots wanted, 4 kept \(\[0.0, 5.0, 10.0, 15.5\]\)"):
        curve.last_snapshots([str(first), str(second)], 5)


@pytest.mark.parametrize(
    "data, message",
    [
        (dict(curve_kimg=[20, 10]), "curve_kimg: expected increasing distinct kimg >= 1"),
        (dict(curve_kimg=[0]), "curve_kimg: expected increasing"),
        (dict(curve_kimg=[10], curve_arms=["gan"]), "curve_arms: expected names of variants of the 'abnormality'"),
        (dict(curve_kimg=[30], kimg=20), "curve_kimg: 30 kimg is beyond the training of"),
        (dict(curve_panel=["resnet18"]), "curve_panel: expected members of the panel or the downstream protocol's"),
        (dict(curve_panel=["vgg"]), "curve_panel: panel member 'vgg'"),
        (dict(curve_panel=["small_cnn"], labels="lesion"), "curve_panel: skill ratios need binary labels"),
        (dict(curve_thresholds={"recall": "high"}), "curve_thresholds: expected {figure: number}"),
        (dict(curve_metrics="fid8_spine"), "curve_metrics: expected a list"),
    ],
)
def test_bad_curve_settings_are_refused_by_name(data, message):
    with pytest.raises(ValueError) as info:
        ExperimentConfig.from_dict(data)
    assert message in str(info.value)
