"""spine.evaluation.downstream: the test set is read once, after every model is final; ratio and table are
consistent."""

import dataclasses
import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

from spine.classifier.artifact import load_classifier
from spine.evaluation import downstream
from spine.evaluation.arms import Arm
from spine.scoring import roc_auc


def write_dataset(root: str, n: int, seed: int, shift: int = 0) -> str:
    """A learnable 16x16 task: abnormal images carry a bright square; one image per study."""
    os.makedirs(root)
    rng = np.random.default_rng(seed)
    labels, images = [], []
    for i in range(n):
        label = i % 2
        img = rng.integers(0, 90, [16, 16]).astype(np.uint8)
        if label:
            img[4 + shift : 10 + shift, 4:10] = 220
        fname = f"img{i:04d}.png"
        PIL.Image.fromarray(img, "L").save(os.path.join(root, fname))
        labels.append([fname, label])
        images.append(dict(file=fname, image_id=f"{seed}-{i}", study_id=f"{seed}-s{i}", split="train"))
    meta = dict(
        labels=labels, spinegan=dict(label_mode="abnormality", class_names=["normal", "abnormal"], images=images)
    )
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(meta, f)
    return root


OPTIONS = downstream.DownstreamOptions(epochs=2, patience=2, batch_size=16, n_resamples=50, seed=0)


def test_a_finished_run_is_recognised_by_its_datasets_and_options(tmp_path):
    real = write_dataset(str(tmp_path / "real"), 40, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 40, seed=2, shift=2)
    test = write_dataset(str(tmp_path / "heldout"), 30, seed=3)
    out = str(tmp_path / "out")
    assert downstream.finished_downstream(out, real, {"gan": fake}, test, OPTIONS) is None  # nothing run yet
    results = downstream.run_downstream(real, {"gan": fake}, test, out, OPTIONS, without_mixed={"gan"})
    found = downstream.finished_downstream(out, real, {"gan": fake}, test, OPTIONS, without_mixed={"gan"})
    assert found == json.loads(json.dumps(results))
    other_options = dataclasses.replace(OPTIONS, epochs=3)
    assert downstream.finished_downstream(out, real, {"gan": fake}, test, other_options, {"gan"}) is None
    assert downstream.finished_downstream(out, real, {"gan": fake}, test, OPTIONS) is None  # with the mixed arm
    assert downstream.finished_downstream(out, real, {}, test, OPTIONS, {"gan"}) is None  # another set of arms
    replaced = write_dataset(str(tmp_path / "fake2"), 40, seed=4, shift=2)
    os.rename(fake, str(tmp_path / "old"))
    os.rename(replaced, fake)  # the same path, other images
    assert downstream.finished_downstream(out, real, {"gan": fake}, test, OPTIONS, {"gan"}) is None


def test_test_set_is_opened_only_by_the_final_evaluation(tmp_path, monkeypatch):
    real = write_dataset(str(tmp_path / "real"), 40, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 40, seed=2, shift=2)
    test = write_dataset(str(tmp_path / "heldout"), 30, seed=3)
    events = []
    load, train = downstream.load_labelled_images, downstream.train_classifier

    def recording_load(path):
        events.append(("load", os.path.basename(path)))
        return load(path)

    def recording_train(data, options):
        assert test not in data.source
        events.append(("train", data.source))
        return train(data, options)

    monkeypatch.setattr(downstream, "load_labelled_images", recording_load)
    monkeypatch.setattr(downstream, "train_classifier", recording_train)
    results = downstream.run_downstream(real, {"gan": fake}, test, str(tmp_path / "out"), OPTIONS)

    assert events.count(("load", "heldout")) == 1 and events[-1] == ("load", "heldout")
    assert [e for e in events if e[0] == "train"] == [("train", real), ("train", fake), ("train", f"{real} + {fake}")]
    assert list(results["models"]) == ["real", "synthetic-gan", "real+synthetic-gan"]
    mixed = results["models"]["real+synthetic-gan"]
    assert mixed["num_train"] + mixed["num_val"] == 80
    assert results["test"]["num_images"] == 30
    for arm in results["models"]:
        assert (tmp_path / "out" / f"classifier-{arm}.pkl").is_file()
    table = (tmp_path / "out" / "downstream.md").read_text()
    assert "| Synthetic only (gan) |" in table and "| Real + synthetic (gan) |" in table
    ratio = results["ratios"]["synthetic-gan"]
    expected = results["models"]["synthetic-gan"]["auc"] / results["models"]["real"]["auc"]
    assert ratio["ratio"] == pytest.approx(expected) and f"{expected:.3f}" in table


def test_an_arm_without_a_mixed_model_trains_only_its_synthetic_one(tmp_path):
    real = write_dataset(str(tmp_path / "real"), 20, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 20, seed=2, shift=2)
    models = downstream.train_arms(real, {"gan": fake, "pool": fake}, OPTIONS, without_mixed=["pool"])
    assert list(models) == [Arm("real"), Arm("synthetic", "gan"), Arm("mixed", "gan"), Arm("synthetic", "pool")]
    assert [arm.key for arm in models] == ["real", "synthetic-gan", "real+synthetic-gan", "synthetic-pool"]


def test_models_trained_in_worker_processes_equal_those_trained_in_this_one(tmp_path):
    import torch

    from spine.classifier.data import load_labelled_images, predict_probabilities

    real = write_dataset(str(tmp_path / "real"), 20, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 20, seed=2, shift=2)
    test = load_labelled_images(write_dataset(str(tmp_path / "heldout"), 12, seed=3))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count, so that both runs sum in the same order
    try:
        here = downstream.train_arms(real, {"gan": fake, "pool": fake}, OPTIONS, without_mixed=["pool"])
    finally:
        torch.set_num_threads(threads)
    apart = downstream.train_arms(real, {"gan": fake, "pool": fake}, OPTIONS, without_mixed=["pool"], workers=2)

    assert list(apart) == list(here)  # the sources' order, whatever order the workers finished in
    for arm, model in here.items():
        assert apart[arm].provenance["best_epoch"] == model.provenance["best_epoch"]
        expected = predict_probabilities(model.net, model.spec, test.images)
        actual = predict_probabilities(apart[arm].net, apart[arm].spec, test.images)
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_a_model_the_memo_keeps_is_taken_from_it_and_the_lone_model_left_trains_here(tmp_path, monkeypatch):
    from spine.classifier.data import load_labelled_images
    from spine.evaluation.model_memo import ModelMemo

    real = write_dataset(str(tmp_path / "real"), 20, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 20, seed=2, shift=2)
    images = load_labelled_images(real)
    train_options = OPTIONS.train_options(images.resolution)
    memo = ModelMemo(tmp_path / "memo")
    kept = downstream.train_classifier(images, train_options)
    memo.put([images], train_options, kept)
    trained = []
    real_train_on = downstream._train_on
    monkeypatch.setattr(downstream, "_train_on", lambda paths, *a: trained.append(paths) or real_train_on(paths, *a))
    monkeypatch.setattr(downstream, "_train_in_processes", lambda *a: pytest.fail("a lone model left went to a worker"))
    models = downstream.train_arms(real, {"gan": fake}, OPTIONS, without_mixed=["gan"], workers=2, memo=memo)
    assert trained == [(fake,)]  # only the synthetic arm trained, in this process
    assert list(models) == [Arm("real"), Arm("synthetic", "gan")]
    assert models[Arm("real")].provenance == kept.provenance
    for key, value in kept.net.state_dict().items():
        assert torch.equal(models[Arm("real")].net.state_dict()[key], value), key


def test_every_arm_uses_the_protocols_input_norm(tmp_path):
    real = write_dataset(str(tmp_path / "real"), 40, seed=1)
    fake = write_dataset(str(tmp_path / "fake"), 40, seed=2, shift=2)
    test = write_dataset(str(tmp_path / "heldout"), 30, seed=3)
    options = dataclasses.replace(OPTIONS, input_norm="blurred_image")
    results = downstream.run_downstream(real, {"gan": fake}, test, str(tmp_path / "out"), options)
    for arm in results["models"]:
        assert load_classifier(tmp_path / "out" / f"classifier-{arm}.pkl").spec.input_norm == "blurred_image"
    with pytest.raises(ValueError, match="input_norm must be one of"):
        downstream.run_downstream(real, {}, test, str(tmp_path / "bad"), dataclasses.replace(OPTIONS, input_norm="x"))


def test_auc_ratio_is_paired_and_exact():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    real_scores = labels + rng.normal(0, 0.6, 200)
    fake_scores = labels + rng.normal(0, 1.2, 200)
    result = downstream.auc_ratio(labels, fake_scores, real_scores, n_resamples=300, seed=0)
    assert result["ratio"] == pytest.approx(roc_auc(labels, fake_scores) / roc_auc(labels, real_scores))
    low, high = result["ratio_ci"]
    assert low < result["ratio"] < high < 1.0
    same = downstream.auc_ratio(labels, real_scores, real_scores, n_resamples=50, seed=0)
    assert same["ratio"] == 1.0 and same["ratio_ci"] == [1.0, 1.0]  # paired: identical models never differ


def brute_auc(labels, scores):
    """P(score_pos > score_neg) + 0.5 P(tie) over all pairs, in float64."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))


def test_skill_ratio_closed_form():
    assert downstream.skill_ratio(0.8, 0.9) == pytest.approx(0.75)
    assert downstream.skill_ratio(0.5, 0.83) == 0.0  # chance keeps none of the real model's skill
    assert downstream.skill_ratio(0.9, 0.9) == 1.0
    assert downstream.skill_ratio(0.4, 0.9) == pytest.approx(-0.25)
    assert np.isnan(downstream.skill_ratio(0.7, 0.5))  # no skill to keep


def test_skill_interval_matches_a_brute_force_paired_bootstrap():
    rng = np.random.default_rng(3)
    n = 60
    labels = rng.integers(0, 2, n)
    real_scores = labels + rng.normal(0, 0.7, n)
    fake_scores = labels + rng.normal(0, 1.5, n)
    result = downstream.auc_ratio(labels, fake_scores, real_scores, n_resamples=200, seed=5)
    # The same resamples drawn by hand (redrawing one-class resamples), both AUCs by all-pairs comparison.
    draw = np.random.default_rng(5)
    skills, plain = [], []
    while len(skills) < 200:
        idx = draw.integers(0, n, n)
        if not 0 < labels[idx].sum() < n:
            continue
        syn, real = brute_auc(labels[idx], fake_scores[idx]), brute_auc(labels[idx], real_scores[idx])
        skills.append((syn - 0.5) / (real - 0.5))
        plain.append(syn / real)
    full_syn, full_real = brute_auc(labels, fake_scores), brute_auc(labels, real_scores)
    # float64 rank sums vs pair counts over at most 60x60 pairs: agreement to ~1e-12.
    assert result["skill"] == pytest.approx((full_syn - 0.5) / (full_real - 0.5), abs=1e-12)
    assert result["skill_ci"] == pytest.approx(list(np.quantile(skills, [0.025, 0.975])), abs=1e-12)
    assert result["ratio_ci"] == pytest.approx(list(np.quantile(plain, [0.025, 0.975])), abs=1e-12)
    same = downstream.auc_ratio(labels, real_scores, real_scores, n_resamples=50, seed=0)
    assert same["skill"] == 1.0 and same["skill_ci"] == [1.0, 1.0]


def test_markdown_table_has_skill_and_says_which_arm_is_at_chance():
    report = dict(n_resamples=10)
    results = dict(
        test=dict(num_images=10, prevalence=dict(normal=0.5, abnormal=0.5)),
        models=dict(
            real=dict(
                kind="real",
                generator=None,
                auc=0.9,
                auc_ci=[0.85, 0.95],
                num_train=8,
                num_val=2,
                best_val_auc=0.9,
                test_report=report,
            ),
            **{
                "synthetic-gan": dict(
                    kind="synthetic",
                    generator="gan",
                    auc=0.52,
                    auc_ci=[0.45, 0.6],
                    num_train=8,
                    num_val=2,
                    best_val_auc=0.93,
                    test_report=report,
                )
            },
        ),
        ratios={"synthetic-gan": dict(ratio=0.52 / 0.9, ratio_ci=[0.5, 0.66], skill=0.05, skill_ci=[-0.1, 0.25])},
    )
    table = downstream.markdown_table(results)
    assert (
        "| Synthetic only (gan) | 8 / 2 | 0.930 | 0.520 | 0.450-0.600 | 0.578 (0.500-0.660) "
        "| 0.050 (-0.100-0.250) |" in table
    )
    assert "Not above chance (95% interval of the test AUC reaches 0.5): Synthetic only (gan)." in table
    assert "Real |" in table and "Not above chance" not in table.split("Synthetic only (gan).")[1]
    assert "easier to tell apart" not in table  # 0.93 is within the margin of the real model's 0.90


def test_table_names_the_arms_whose_classes_are_exaggerated():
    report = dict(n_resamples=10)
    row = dict(auc=0.6, auc_ci=[0.55, 0.65], num_train=8, num_val=2, test_report=report)
    results = dict(
        test=dict(num_images=10, prevalence=dict(normal=0.5, abnormal=0.5)),
        models={
            "real": dict(row, kind="real", generator=None, best_val_auc=0.90),
            "synthetic-a": dict(row, kind="synthetic", generator="a", best_val_auc=0.96),
            "synthetic-b": dict(row, kind="synthetic", generator="b", best_val_auc=0.95),
            "real+synthetic-a": dict(row, kind="mixed", generator="a", best_val_auc=0.99),
        },
        ratios={},
    )
    assert downstream.exaggerated_arms(results) == ["synthetic-a"]  # 0.95 is exactly at the margin: not named
    table = downstream.markdown_table(results)
    assert (
        "than the real ones (validation AUC on their own images more than 0.05 above the real model's): "
        "Synthetic only (a). The generator" in table
    )


def test_mismatched_synthetic_images_are_refused_before_training(tmp_path):
    real = write_dataset(str(tmp_path / "real"), 10, seed=1)
    big = str(tmp_path / "big")
    os.makedirs(big)
    for i in range(4):
        PIL.Image.fromarray(np.zeros([32, 32], np.uint8), "L").save(f"{big}/img{i}.png")
    with open(f"{big}/dataset.json", "w") as f:
        json.dump({"labels": [[f"img{i}.png", i % 2] for i in range(4)]}, f)
    with pytest.raises(ValueError, match="differ from the real images"):
        downstream.train_arms(real, {"big": big}, OPTIONS)


def test_a_resample_where_the_real_model_reads_auc_0_leaves_the_ratio_interval_undefined():
    """Two studies, one the real model gets right and one it gets exactly wrong: resampling studies draws the
    wrong one twice (real AUC 0) on some resamples, where the plain ratio is undefined rather than a crash."""
    labels = np.array([0, 1, 0, 1])
    real = np.array([0.2, 0.8, 0.9, 0.1])
    synthetic = np.array([0.3, 0.7, 0.4, 0.6])
    ratio = downstream.auc_ratio(labels, synthetic, real, n_resamples=40, seed=0, groups=["a", "a", "b", "b"])
    assert ratio["ratio"] == pytest.approx(1.0 / 0.25) and ratio["ratio_ci"] is None and ratio["skill_ci"] is None
    assert "(undefined CI)" in downstream.ratio_texts(ratio)[0]
