"""spine.evaluation.panel: each member's figures, the lowest skill and its interval against brute-force references."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_downstream import write_dataset

from spine.evaluation import panel as panel_mod
from spine.evaluation.arms import REAL
from spine.evaluation.downstream import DownstreamOptions, skill_ratio
from spine.evaluation.model_memo import ModelMemo
from spine.scoring import hierarchical_values, percentile_interval, roc_auc


def scored_members(seed=0, n=120):
    """Two members' scores on one test set: 'strong' learns more from the synthetic images than 'weak'."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    noise = lambda: rng.normal(size=n)  # noqa: E731
    scores = {
        "strong": {
            REAL: labels * 2.0 + noise(),
            "synthetic-a": labels * 1.5 + noise(),
            "synthetic-b": labels * 1.2 + noise(),
        },
        "weak": {
            REAL: labels * 2.0 + noise(),
            "synthetic-a": labels * 0.5 + noise(),
            "synthetic-b": labels * 0.4 + noise(),
        },
    }
    return labels, scores


def test_one_generator_lowest_skill_and_its_paired_interval_by_brute_force():
    labels, scores = scored_members()
    studies = [i // 2 for i in range(len(labels))]
    result = panel_mod.panel_skill(labels, scores, ["synthetic-a"], n_resamples=150, seed=4, groups=studies)
    skills = {m: skill_ratio(roc_auc(labels, s["synthetic-a"]), roc_auc(labels, s[REAL])) for m, s in scores.items()}
    for member, skill in skills.items():
        assert result["members"][member]["skill"] == pytest.approx(skill, abs=1e-12)
    assert result["lowest_member"] == "weak" and result["lowest_skill"] == pytest.approx(skills["weak"], abs=1e-12)

    cases = []  # the very resamples: same seed, same studies, one replicate (not resampled)
    hierarchical_values(
        lambda reps, idx: cases.append(idx) or np.zeros(1),
        1,
        len(labels),
        lambda idx: 0 < labels[idx].sum() < len(idx),
        150,
        4,
        groups=studies,
        resample_replicates=False,
    )
    lowest = [
        min(
            skill_ratio(roc_auc(labels[i], s["synthetic-a"][i]), roc_auc(labels[i], s[REAL][i]))
            for s in scores.values()
        )
        for i in cases
    ]
    assert result["lowest_skill_ci"] == pytest.approx(list(percentile_interval(np.array(lowest))), abs=1e-12)
    assert result["interval_covers"] == "test studies"


def test_seed_replicates_average_per_member_and_resample_the_seeds():
    labels, scores = scored_members(seed=1)
    result = panel_mod.panel_skill(labels, scores, ["synthetic-a", "synthetic-b"], n_resamples=120, seed=2)
    expected = {
        m: np.mean(
            [skill_ratio(roc_auc(labels, s[a]), roc_auc(labels, s[REAL])) for a in ("synthetic-a", "synthetic-b")]
        )
        for m, s in scores.items()
    }
    for member, skill in expected.items():
        assert result["members"][member]["skill"] == pytest.approx(skill, abs=1e-12)
    assert result["interval_covers"] == "test images and generator seeds"

    draws = []
    hierarchical_values(
        lambda reps, idx: draws.append((reps, idx)) or np.zeros(1),
        2,
        len(labels),
        lambda idx: 0 < labels[idx].sum() < len(idx),
        120,
        2,
    )
    arms = np.array(["synthetic-a", "synthetic-b"])
    lowest = [
        min(
            np.mean([skill_ratio(roc_auc(labels[i], s[a][i]), roc_auc(labels[i], s[REAL][i])) for a in arms[reps]])
            for s in scores.values()
        )
        for reps, i in draws
    ]
    assert result["lowest_skill_ci"] == pytest.approx(list(percentile_interval(np.array(lowest))), abs=1e-12)


def test_members_parse_and_refuse_unknown_names():
    assert panel_mod.PanelMember.parse("resnet18") == panel_mod.PanelMember("resnet18", "dataset")
    assert panel_mod.PanelMember.parse("patch_cnn:blurred_image").name == "patch_cnn:blurred_image"
    with pytest.raises(ValueError, match="architecture"):
        panel_mod.PanelMember.parse("vgg")
    with pytest.raises(ValueError, match="normalisation"):
        panel_mod.PanelMember.parse("small_cnn:zscore")


def test_cli_trains_every_member_and_writes_the_table(tmp_path):
    real = write_dataset(str(tmp_path / "real"), 40, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 40, seed=2, shift=1)
    test = write_dataset(str(tmp_path / "test"), 40, seed=3)
    out = tmp_path / "panel"
    args = [
        "--real-train",
        real,
        "--synthetic",
        f"gan={fake}",
        "--test",
        test,
        "--out",
        str(out),
        "--member",
        "small_cnn",
        "--member",
        "patch_cnn:blurred_image",
        "--epochs",
        "2",
        "--patience",
        "2",
        "--n-resamples",
        "30",
    ]
    result = CliRunner().invoke(panel_mod.main, args)
    assert result.exit_code == 0, result.output
    written = json.loads((out / "panel.json").read_text())
    assert written["members"] == ["small_cnn:dataset", "patch_cnn:blurred_image"]
    row = written["variants"]["gan"]
    assert row["lowest_skill"] == pytest.approx(min(m["skill"] for m in row["members"].values()), abs=1e-12)
    for folder in ("small_cnn-dataset", "patch_cnn-blurred_image"):
        assert (out / folder / "classifier-real.pkl").is_file()
        assert (out / folder / "classifier-synthetic-gan.pkl").is_file()
        assert not (out / folder / "classifier-real+synthetic-gan.pkl").exists()
    assert "Lowest skill ratio" in (out / "panel.md").read_text()

    again = CliRunner().invoke(panel_mod.main, args)  # an earlier panel's folder: its members are not trained again
    assert again.exit_code == 0 and json.loads((out / "panel.json").read_text()) == written
    assert again.output.count("finished earlier, skipped") == 2
    (out / "panel.json").unlink()
    (out / "small_cnn-dataset" / "downstream.json").unlink()  # an interrupted panel: one member left to train
    resumed = CliRunner().invoke(panel_mod.main, args)
    assert resumed.exit_code == 0 and resumed.output.count("finished earlier, skipped") == 1
    assert "Panel member 1/2: small_cnn:dataset\n" in resumed.output
    retrained = CliRunner().invoke(panel_mod.main, [*args[:-4], "--epochs", "1", *args[-2:]])
    assert retrained.exit_code == 0 and "finished earlier" not in retrained.output  # other options: trained again
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused = CliRunner().invoke(panel_mod.main, [*args[:7], str(other), *args[8:]])
    assert refused.exit_code == 1 and "holds other files than an earlier panel's" in refused.output
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    bad = CliRunner().invoke(panel_mod.main, args[:-2] + ["--member", "vgg"])
    assert bad.exit_code == 2 and "vgg" in bad.output


def test_options_reach_every_member(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(
        panel_mod,
        "run_downstream",
        lambda real, syn, test, out, options, without, workers, memo: seen.append((out, options, workers, memo)) or {},
    )
    options = DownstreamOptions(epochs=3, seed=9)
    memo = ModelMemo(tmp_path / "memo")
    panel_mod.train_panel("r", {"g": "s"}, "t", str(tmp_path), panel_mod.FULL_PANEL, options, workers=2, memo=memo)
    assert [(o.arch, o.input_norm) for _, o, _, _ in seen] == [(m.arch, m.input_norm) for m in panel_mod.FULL_PANEL]
    assert all(o.epochs == 3 and o.seed == 9 and workers == 2 and kept is memo for _, o, workers, kept in seen)
