"""spine.evaluation.comparison: paired differences between downstream arms, against closed forms and a direct
bootstrap of the difference itself."""

import json
from pathlib import Path

import bad_inputs
import numpy as np
import pytest
from click.testing import CliRunner

from spine.classifier.artifact import load_classifier
from spine.classifier.data import load_labelled_images, predict_probabilities
from spine.evaluation import comparison
from spine.evaluation.downstream import skill_ratio
from spine.scoring import bootstrap_values, percentile_interval, roc_auc


def arms(n: int = 300, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and scores of arms of known order: 'real' and 'good' carry the label with noise, 'chance' does not."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    return labels, dict(
        real=labels + rng.normal(0, 0.8, n),
        good=labels + rng.normal(0, 1.2, n),
        better=labels + rng.normal(0, 1.0, n),
        chance=rng.normal(0, 1, n),
    )


def test_point_differences_are_the_closed_forms():
    labels, scores = arms()
    auc = {name: roc_auc(labels, s) for name, s in scores.items()}
    (row,) = comparison.paired_differences(labels, scores, [("better", ("good", "chance"))], 20, 0)
    assert row["auc_difference"] == pytest.approx(auc["better"] - (auc["good"] + auc["chance"]) / 2, abs=1e-12)
    skills = {name: skill_ratio(auc[name], auc["real"]) for name in ("better", "good", "chance")}
    assert row["skill_difference"] == pytest.approx(
        skills["better"] - (skills["good"] + skills["chance"]) / 2, abs=1e-12
    )


def test_interval_is_that_of_the_difference_on_shared_resamples():
    labels, scores = arms()
    (row,) = comparison.paired_differences(labels, scores, [("better", ("good",))], 200, 3)

    def difference(idx):
        return [roc_auc(labels[idx], scores["better"][idx]) - roc_auc(labels[idx], scores["good"][idx])]

    direct = bootstrap_values(difference, len(labels), lambda idx: 0 < labels[idx].sum() < len(idx), 200, 3)
    assert row["auc_ci"] == pytest.approx(list(percentile_interval(direct[:, 0])), abs=1e-12)


def test_an_arm_against_its_copy_differs_by_exactly_zero():
    labels, scores = arms()
    scores["copy"] = scores["good"].copy()
    (row,) = comparison.paired_differences(labels, scores, [("good", ("copy",))], 100, 0)
    assert row["auc_difference"] == 0 and row["auc_ci"] == [0, 0]
    assert row["skill_difference"] == 0 and row["skill_ci"] == [0, 0]


def test_without_the_real_arm_only_auc_is_compared():
    labels, scores = arms()
    del scores["real"]
    (row,) = comparison.paired_differences(labels, scores, [("good", ("chance",))], 20, 0)
    assert set(row) == {"left", "right", "resampled", "auc_difference", "auc_ci"}
    assert row["auc_ci"][0] > 0  # 'good' beats chance on every resample


def test_skill_interval_is_undefined_when_the_real_arm_can_fall_to_chance():
    labels, scores = arms(n=40)
    scores["real"] = np.random.default_rng(1).normal(0, 1, 40)  # a real arm near chance: some resamples below 0.5
    (row,) = comparison.paired_differences(labels, scores, [("good", ("chance",))], 200, 0)
    assert row["skill_ci"] is None and "undefined" in comparison.markdown_table([row])


def downstream_folder(root: Path, arms_and_seeds: dict[str, int]) -> Path:
    """A downstream folder of untrained classifiers (different weights per seed) and a 16x16 binary test set."""
    folder = root / "downstream"
    folder.mkdir()
    for arm, seed in arms_and_seeds.items():
        bad_inputs.classifier_file(folder / f"classifier-{arm}.pkl", seed=seed)
    return folder


def test_cli_matches_a_direct_computation_and_resolves_generator_names(tmp_path):
    folder = downstream_folder(tmp_path, {"real": 0, "synthetic-a": 1, "synthetic-b": 2})
    test = bad_inputs.write_images(tmp_path / "test", [16] * 40, [k % 2 for k in range(40)])
    result = CliRunner().invoke(
        comparison.main,
        [
            "--downstream",
            str(folder),
            "--test",
            str(test),
            "--compare",
            "a",
            "b",
            "--n-resamples",
            "50",
            "--out",
            str(tmp_path / "d.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    images = load_labelled_images(str(test))
    scores = {
        arm: predict_probabilities(model, model.spec, images.images).double().numpy()
        for arm in ("real", "synthetic-a", "synthetic-b")
        for model in [load_classifier(folder / f"classifier-{arm}.pkl")]
    }
    by_name = dict(real=scores["real"], a=scores["synthetic-a"], b=scores["synthetic-b"])
    (expected,) = comparison.paired_differences(images.labels.numpy(), by_name, [("a", ("b",))], 50, 0)
    assert json.loads((tmp_path / "d.json").read_text()) == [expected]
    assert f"| a | b | {expected['auc_difference']:+.3f}" in result.output


@pytest.mark.parametrize(
    "compare, message",
    [
        (["a", "missing"], "has no classifier-missing.pkl nor classifier-synthetic-missing.pkl"),
        (["a", "a"], "expected two different arms"),
        (["a", ","], "expected two different arms"),
        ([], "give at least one --compare"),
    ],
)
def test_cli_bad_comparisons_get_one_line_and_write_nothing(tmp_path, compare, message):
    folder = downstream_folder(tmp_path, {"synthetic-a": 1})
    test = bad_inputs.write_images(tmp_path / "test", [16] * 8, [k % 2 for k in range(8)])
    before = bad_inputs.tree(tmp_path)
    args = ["--compare", *compare] if compare else []
    result = CliRunner().invoke(
        comparison.main, ["--downstream", str(folder), "--test", str(test), *args, "--out", str(tmp_path / "d.json")]
    )
    bad_inputs.assert_refused(result, message, 1 if "missing" in message else 2, tmp_path, before)


def test_cli_refuses_a_test_set_of_more_than_two_classes(tmp_path):
    folder = downstream_folder(tmp_path, {"synthetic-a": 1, "synthetic-b": 2})
    test = bad_inputs.write_images(tmp_path / "test", [16] * 9, [k % 3 for k in range(9)])
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(
        comparison.main, ["--downstream", str(folder), "--test", str(test), "--compare", "a", "b"]
    )
    bad_inputs.assert_refused(result, "3 classes; comparisons take a binary", 1, tmp_path, before)


def test_study_resampling_is_named_in_the_rows_and_the_table():
    labels, scores = arms()
    studies = [i // 3 for i in range(len(labels))]
    (row,) = comparison.paired_differences(labels, scores, [("good", ("chance",))], 20, 0, groups=studies)
    assert row["resampled"] == "studies"
    assert "bootstrap over test studies" in comparison.markdown_table([row])
