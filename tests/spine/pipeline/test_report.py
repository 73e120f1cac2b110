"""spine.pipeline.report: every section present, numbers from the experiment's files, figures written, neighbours
exact."""

import dataclasses
import json
import os
import re

import numpy as np
import PIL.Image
import pytest

from spine.pipeline import report
from spine.pipeline.config import ExperimentConfig, Pool, Variant


def write_dataset(root, images, labels):
    os.makedirs(root)
    entries = []
    for i, (img, label) in enumerate(zip(images, labels)):
        PIL.Image.fromarray(img, "L").save(os.path.join(root, f"img{i:03d}.png"))
        entries.append([f"img{i:03d}.png", label])
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(dict(labels=entries, spinegan=dict(label_mode="abnormality", class_names=["normal", "abnormal"])), f)
    return root


def mark(outdir, step, outputs, seconds=1.0):
    path = outdir / "steps" / f"{step.replace('/', '--')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(step=step, outputs=outputs, seconds=seconds)))


@pytest.fixture
def experiment_dir(tmp_path):
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 255, [16, 16]).astype(np.uint8) for _ in range(10)]
    fake = [real[3].copy(), rng.integers(0, 255, [16, 16]).astype(np.uint8)] + [
        rng.integers(0, 255, [16, 16]).astype(np.uint8) for _ in range(4)
    ]
    train = write_dataset(str(tmp_path / "train"), real, [i % 2 for i in range(10)])
    synthetic = write_dataset(str(tmp_path / "synth"), fake, [0, 0, 0, 1, 1, 1])
    config = ExperimentConfig(resolution=16, kimg=2, variants=(Variant("spinegan", 0.1, ("--dp=1",)),))
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "stats.jsonl", "w") as f:
        for kimg in (1.0, 2.0):
            f.write(
                json.dumps(
                    {
                        "Progress/kimg": {"mean": kimg},
                        "Loss/G/loss": {"mean": 2 / kimg},
                        "Loss/G/clinical": {"mean": 0.05},
                        "Privacy/epsilon": {"mean": kimg},
                    }
                )
                + "\n"
            )
    (run_dir / "metric-fid50.jsonl").write_text(
        json.dumps(dict(results=dict(fid50=33.0), metric="fid50", snapshot_pkl="network-snapshot-000002.pkl")) + "\n"
    )
    downstream = dict(
        test=dict(num_images=30, prevalence=dict(normal=0.5, abnormal=0.5)),
        models=dict(
            real=dict(
                kind="real", generator=None, auc=0.9, auc_ci=[0.8, 0.97], num_train=8, num_val=2, best_val_auc=0.88
            ),
            **{
                "synthetic-spinegan": dict(
                    kind="synthetic",
                    generator="spinegan",
                    auc=0.81,
                    auc_ci=[0.7, 0.9],
                    num_train=5,
                    num_val=1,
                    best_val_auc=0.99,
                )
            },
        ),
        ratios={"synthetic-spinegan": dict(ratio=0.9, ratio_ci=[0.8, 0.99], skill=0.775, skill_ci=[0.5, 0.95])},
    )
    (tmp_path / "downstream.json").write_text(json.dumps(downstream))
    mark(tmp_path, "data/train", dict(dataset=train))
    mark(tmp_path, "classifier", dict(classifier="c.pkl", best_val_auc=0.93, best_epoch=4))
    mark(tmp_path, "judge", dict(classifier="j.pkl", best_val_auc=0.91, best_epoch=5))
    snapshot = str(run_dir / "network-snapshot-000002.pkl")
    mark(tmp_path, "train/spinegan", dict(run_dirs=[str(run_dir)], snapshot=snapshot))
    mark(tmp_path, "synthesize/spinegan", dict(dataset=synthetic))
    mark(
        tmp_path,
        "metrics/spinegan",
        dict(
            results=dict(
                label_fidelity8_accuracy=0.75,
                independent_label_fidelity8_accuracy=0.625,
                fid1k_full=40.5,
                pr1003_inception_recall=0.5,
            ),
            errors=dict(fid500_full="OSError: no Inception weights"),
        ),
    )
    mark(
        tmp_path,
        "metrics/real-vs-real",
        dict(results=dict(fid1k_full=12.25, pr1003_inception_recall=0.625), errors={}),
    )
    mark(tmp_path, "downstream", dict(json=str(tmp_path / "downstream.json")))
    return tmp_path


def test_report_has_every_section_and_the_numbers(experiment_dir):
    path = report.write_experiment_report(experiment_dir)
    page = path.read_text()
    headings = re.findall(r"<h2 id='[^']+'>([^<]+)</h2>", page)
    assert headings == list(report.SECTIONS)
    assert "test AUC 0.900 (95% CI 0.800-0.970)" in page
    assert (
        "AUC 0.810 (95% CI 0.700-0.900) (skill ratio 0.78, 95% CI 0.50-0.95; plain ratio to real 0.90, "
        "95% CI 0.80-0.99)"
    ) in page
    assert "not above chance" not in page
    assert (
        "<td>5 / 1</td><td>0.990</td><td>0.810</td><td>0.700-0.900</td><td>0.900 (0.800-0.990)</td>"
        "<td>0.775 (0.500-0.950)</td>"
    ) in page
    assert (
        "Its classes are easier to tell apart on its own images (validation AUC 0.990) than real ones (0.880): "
        "the generator exaggerates the class difference."
    ) in page
    assert "real normal, synthetic normal, real abnormal, synthetic abnormal" in page
    assert "class-means-spinegan.png" in page and "r = " in page
    assert (
        "<td>label_fidelity8_accuracy</td><td>8 generated per class, classified by the clinical judge</td>"
        "<td>0.7500</td><td></td><td></td>"
    ) in page
    assert "<td>independent_label_fidelity8_accuracy</td><td>8 generated per class, classified by the " in page
    assert "no generator was trained against" in page and "validation AUC 0.910" in page
    assert "not computed: OSError: no Inception weights" in page
    fid = (
        "<td>fid1k_full</td><td>1000 generated vs all training images, Inception features</td><td>40.5000</td>"
        "<td>12.2500 (1000 test vs all training)</td><td></td>"
    )
    recall = (
        "<td>pr1003_inception_recall</td><td>100 generated vs 100 training images, Inception features</td>"
        "<td>0.5000</td><td>0.6250 (100 test vs 100 training)</td><td>0.80</td>"
    )
    assert page.count(fid) == 2 and page.count(recall) == 2  # the metrics table, and beside the samples
    assert "compare with the &#x27;real vs real&#x27; column" in page and "No Inception FID" not in page
    assert "<td>total</td><td>8 s (0.1 min)</td>" in page  # eight steps of 1 s
    assert "--dp=1" in page and "does not cover the classifier" in page and "Not for" in page
    assert "seeded phantom" in page and "validation AUC 0.930 at epoch 4" in page
    for name in re.findall(r"<img src='([^']+)'", page):
        assert PIL.Image.open(path.parent / name).size[0] > 0
    assert {"curves.png", "samples-spinegan.png", "neighbours-spinegan.png"} <= set(os.listdir(path.parent))


def test_headline_says_in_words_when_an_arm_is_at_chance():
    downstream = dict(
        models=dict(
            real=dict(kind="real", generator=None, auc=0.83, auc_ci=[0.79, 0.87], best_val_auc=0.85),
            **{
                "synthetic-gan": dict(
                    kind="synthetic", generator="gan", auc=0.50, auc_ci=[0.45, 0.55], best_val_auc=0.86
                )
            },
        ),
        ratios={"synthetic-gan": dict(ratio=0.60, ratio_ci=[0.54, 0.67], skill=0.0, skill_ci=[-0.15, 0.16])},
    )
    text = report.headline(dict(resolution=32, kimg=30), downstream)
    assert "The gan-only model is not above chance: its 95% interval (0.45-0.55) reaches 0.5." in text
    assert "skill ratio 0.00, 95% CI -0.15-0.16" in text and "real-data model is not" not in text
    assert "exaggerates" not in text  # 0.86 against 0.85: within the margin


def test_class_means_and_their_difference_correlation(experiment_dir, tmp_path):
    means = report.class_means(str(experiment_dir / "synth"))
    images = [np.asarray(PIL.Image.open(experiment_dir / "synth" / f"img{i:03d}.png"), np.float64) for i in range(6)]
    np.testing.assert_allclose(means["normal"], np.mean(images[:3], axis=0), atol=1e-9)
    np.testing.assert_allclose(means["abnormal"], np.mean(images[3:], axis=0), atol=1e-9)
    assert report.difference_correlation(means, means) == pytest.approx(1.0)
    flipped = dict(normal=means["abnormal"], abnormal=means["normal"])
    assert report.difference_correlation(means, flipped) == pytest.approx(-1.0)
    assert report.plot_class_means(means, flipped, tmp_path / "m.png") == "m.png"


def test_nearest_neighbour_finds_the_copied_image(experiment_dir, tmp_path):
    _, distances = report.nearest_neighbours(
        str(experiment_dir / "synth"), str(experiment_dir / "train"), tmp_path / "nn.png", num=2
    )
    assert distances[0] == 0.0  # sample 0 is a copy of real image 3
    assert distances[1] > 20  # an independent noise image is far from every real one


def test_sample_grid_rows_follow_classes(experiment_dir, tmp_path):
    name, classes = report.sample_grid(str(experiment_dir / "synth"), tmp_path / "grid.png", per_class=3, cell=16)
    grid = np.asarray(PIL.Image.open(tmp_path / name))
    assert classes == ["normal", "abnormal"] and grid.shape == (32, 48)
    first = np.asarray(PIL.Image.open(experiment_dir / "synth" / "img000.png"))
    np.testing.assert_array_equal(grid[:16, :16], first)  # row 0 starts with the first normal sample
    fourth = np.asarray(PIL.Image.open(experiment_dir / "synth" / "img003.png"))
    np.testing.assert_array_equal(grid[16:, :16], fourth)  # row 1 starts with the first abnormal sample


def test_sample_grid_puts_real_rows_beside_synthetic_rows(experiment_dir, tmp_path):
    name, rows = report.sample_grid(
        str(experiment_dir / "synth"),
        tmp_path / "grid.png",
        per_class=2,
        cell=16,
        real_path=str(experiment_dir / "train"),
    )
    grid = np.asarray(PIL.Image.open(tmp_path / name))
    assert rows == ["real normal", "synthetic normal", "real abnormal", "synthetic abnormal"]
    assert grid.shape == (64, 32)
    real_first_abnormal = np.asarray(PIL.Image.open(experiment_dir / "train" / "img001.png"))
    np.testing.assert_array_equal(grid[32:48, :16], real_first_abnormal)  # same 16 px cell as the samples
    np.testing.assert_array_equal(grid[48:64, :16], np.asarray(PIL.Image.open(experiment_dir / "synth" / "img003.png")))


def test_seeds_section_gives_replicate_means_and_the_clinical_loss_effect():
    config = ExperimentConfig(
        variants=(
            Variant("spinegan", 0.1),
            Variant("spinegan-seed1", 0.1, seed=1),
            Variant("stylegan2-ada"),
            Variant("stylegan2-ada-seed1", seed=1),
        )
    )
    assert "No arm was trained with more than one seed" in report.seeds_section({}, config)
    skills = {
        "synthetic-spinegan": 0.8,
        "synthetic-spinegan-seed1": 0.9,
        "synthetic-stylegan2-ada": 0.7,
        "synthetic-stylegan2-ada-seed1": 0.6,
    }
    aucs = {
        "synthetic-spinegan": 0.82,
        "synthetic-spinegan-seed1": 0.86,
        "synthetic-stylegan2-ada": 0.78,
        "synthetic-stylegan2-ada-seed1": 0.74,
    }
    section = report.seeds_section(
        dict(downstream=dict(skills=skills, aucs=aucs, ratios=dict.fromkeys(skills, 0.9))), config
    )
    # two seeds: t(1) 97.5% point 12.706; AUC sd 0.02828 -> half-width 0.254; skill sd 0.0707 -> 0.635
    assert "<td>spinegan</td><td>2</td><td>0.840 (0.586 to 1.094)</td><td>0.85 (0.21 to 1.49)</td>" in section
    assert "spinegan minus stylegan2-ada, paired by training seed (2 seeds)" in section
    assert "<td>skill ratio</td><td>+0.200 (-1.071 to +1.471)</td>" in section  # differences 0.1 and 0.3
    assert "not paired" not in section
    longer = dataclasses.replace(
        config, variants=tuple(dataclasses.replace(v, kimg=40) if "spinegan" in v.name else v for v in config.variants)
    )
    section = report.seeds_section(
        dict(downstream=dict(skills=skills, aucs=aucs, ratios=dict.fromkeys(skills, 0.9))), longer
    )
    assert "paired by training seed" not in section
    assert f"not paired (spinegan trains 40 kimg and stylegan2-ada {longer.kimg}: paired at equal kimg" in section


def test_privacy_section_reads_a_dp_generator_against_its_epsilon():
    assert "No privacy audit" in report.privacy_section({}, ["spinegan"])
    figures = dict(mia_auc=0.52, mia_tpr_at_1pct_fpr=0.015, share_closer_to_train=0.51)
    steps = {
        "privacy/spinegan": dict(privacy=dict(guarantee="none recorded"), spaces=dict(pixel=figures)),
        "privacy/spinegan-dp": dict(
            privacy=dict(account=dict(differentially_private=True, epsilon=2.0, delta=1e-5)), spaces=dict(pixel=figures)
        ),
    }
    section = report.privacy_section(steps, ["spinegan", "spinegan-dp"])
    assert "<td>spinegan</td><td>pixel</td><td>0.520</td><td>0.015</td><td>no DP guarantee</td><td>0.51</td>" in section
    assert "<td>spinegan-dp</td><td>pixel</td><td>0.520</td><td>0.015</td><td>0.0739</td>" in section  # e^2/100
    steps["privacy/spinegan"]["inversion"] = dict(num_per_set=64, steps=100, mia_auc=0.61, mia_tpr_at_1pct_fpr=0.03)
    assert (
        "<td>spinegan</td><td>inversion (64 per set, 100 steps)</td><td>0.610</td><td>0.030</td>"
        "<td>no DP guarantee</td><td>-</td>" in report.privacy_section(steps, ["spinegan"])
    )


def test_model_card_says_what_a_pooled_arm_is():
    config = ExperimentConfig(variants=(Variant("a"), Variant("b")), pools=(Pool("ab", ("a", "b")),)).to_dict()
    card = report.model_card(config, {})
    assert "<b>Pooled arm ab</b>: no generator of its own; the synthetic images of a, b together" in card
    assert "Pooled arm" not in report.model_card(ExperimentConfig().to_dict(), {})


def test_model_card_says_how_abnormal_images_were_drawn():
    local = ExperimentConfig(synth_local_difference=0.15).to_dict()
    assert "normal rendering plus the strongest 15% of the pixels" in report.model_card(local, {})
    assert "<b>Synthesis</b>" not in report.model_card(ExperimentConfig().to_dict(), {})
    twins = ExperimentConfig(synth_twins=True).to_dict()
    assert "<b>Synthesis</b>: twins: each latent is rendered once in every class" in report.model_card(twins, {})


def test_metrics_are_listed_once_per_number_and_timings_in_pipeline_order_with_a_total():
    from spine.pipeline.report_tables import fidelity_rows, timing_rows

    results = dict(
        label_fidelity200_accuracy=0.75,
        label_fidelity200_auc=0.8125,
        label_fidelity200_normal_auc=0.8125,
        label_fidelity200_abnormal_auc=0.8125,
        independent_label_fidelity200_auc=0.8125,
        fid1k_spine=0.8125,
    )
    rows = fidelity_rows("gan", results, dict(fid1k_spine=0.5), "half-B training")
    assert [row[:2] + row[3:] for row in rows] == [
        ["gan", "fid1k_spine", "0.8125", "0.5000 (1000 test vs 1000 training)", ""],  # another metric: its own row
        ["gan", "independent_label_fidelity200_auc", "0.8125", "", ""],
        ["gan", "label_fidelity200_auc (also abnormal_auc, normal_auc)", "0.8125", "", ""],
        ["gan", "label_fidelity200_accuracy", "0.7500", "", ""],
    ]
    assert rows[0][2] == "1000 generated vs 1000 training images, the clinical judge's features"
    assert rows[1][2] == "200 generated per class, classified by the independent judge"
    steps = {
        "classifier": dict(seconds=60.0, finished=20.0),
        "data/phantom": dict(seconds=30.0, finished=10.0),
        "train/gan": dict(seconds=600.0, finished=30.0),
    }  # read alphabetically, run in another order
    assert timing_rows(steps) == [
        ["data/phantom", "30 s"],
        ["classifier", "60 s"],
        ["train/gan", "600 s"],
        ["total", "690 s (11.5 min)"],
    ]


def test_a_run_without_inception_fid_says_how_to_get_it():
    from spine.pipeline.report_tables import fid_note

    assert "No Inception FID in this run" in fid_note(["fid2k_spine", "label_fidelity200"])
    assert "baseline" in fid_note(["fid2k_spine"]) and fid_note(["fid2k", "label_fidelity200"]).count("Inception") == 0


def test_dp_card_says_whether_the_judge_is_in_the_account():
    assert "does not cover the classifier of the clinical loss" in report.dp_card(dict(dp_judge_epsilon=None))
    with_judge = report.dp_card(dict(dp_judge_epsilon=2.0))
    assert "trained with DP-SGD at epsilon 2 on the same images and composed into the one epsilon" in with_judge
    assert "does not cover the metrics' classifier" in with_judge
    variants = [
        dict(train_args=["--dp=1", "--dp-data-public=1"], dp_judge_epsilon=10.0),
        dict(train_args=["--dp=1"], dp_judge_epsilon=None),
        dict(train_args=[], dp_judge_epsilon=None),
    ]
    per_variant = report.dp_card(dict(dp_judge_epsilon=1.0, variants=variants))
    assert "at epsilon 1 / 10 (per variant) on the same images" in per_variant
    assert "its DP judge is its only access to the private images" in per_variant
    assert "only access" not in report.dp_card(dict(dp_judge_epsilon=1.0, variants=variants[1:]))


def test_arms_note_names_every_arm_that_is_not_one_generator_of_the_experiments_kimg():
    assert report.arms_note(ExperimentConfig(variants=(Variant("spinegan", 0.1),))) == ""
    config = ExperimentConfig(
        kimg=4,
        variants=(Variant("a"), Variant("b", seed=1), Variant("c", kimg=2), Variant("a-8kimg", kimg=8)),
        pools=(Pool("ab", ("a", "b"), long_generator="a-8kimg"),),
    )
    note = report.arms_note(config)
    assert "Arms that are not the final snapshot of one generator of 4 kimg: ab: pooled: 2 generators, 8 kimg" in note
    assert note.count("a-8kimg: one generator of 8 kimg") == 1  # the long generator once, though also of other kimg
    assert "c: one generator of 2 kimg" in note and "b: one generator" not in note


def test_arms_note_says_which_arms_draw_from_several_snapshots():
    config = ExperimentConfig(
        kimg=20, snap=5, synth_snapshots=3, variants=(Variant("a"), Variant("b", kimg=10, synth_snapshots=1))
    )
    note = report.arms_note(config)
    assert "a: one generator of 20 kimg, its images drawn in turn from its last 3 snapshots (every 5 ticks)" in note
    assert "b: one generator of 10 kimg, 500 images per class" in note  # its own length, its final snapshot alone
