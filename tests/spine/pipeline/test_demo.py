"""spine.pipeline.demo: the configs are what the README promises; a tiny version of the whole story runs for real."""

import dataclasses
import json

import pytest

from spine.pipeline import demo, experiment
from spine.pipeline.config import ExperimentConfig, Variant
from training.serialization import load_network_pkl


def test_demo_config_is_one_spinegan_on_the_phantom():
    config = demo.MODES["demo"]
    assert config.source is None and config.gan_cfg == "demo"
    assert (config.phantom_lesion_scale, config.phantom_zoom) == (3.0, 1.5)
    assert (config.classifier_arch, config.classifier_input_norm) == ("patch_cnn", "blurred_image")
    assert [(v.name, v.clinical_weight, v.train_args) for v in config.variants] == [
        ("spinegan", 0.1, ("--clinical-augment=1", "--pose-res=8", "--pose-source=z", "--class-mean-match=10"))
    ]
    assert config.synth_local_difference is None  # the demo exports G's own renderings
    assert config.synth_twins and config.class_reference == 20000  # RESULTS AM
    # The benchmark's and dp's SpineGAN arms stay as confirmed there: no pose warp, no class-mean matching, abnormal
    # images drawn with the local class difference.
    for mode in ("benchmark", "dp"):
        assert {v.name: v for v in demo.mode_config(mode, 3).variants}["spinegan"] == demo.SPINEGAN
        assert demo.mode_config(mode, 3).synth_local_difference == 0.15
        assert not demo.mode_config(mode, 3).synth_twins and demo.mode_config(mode, 3).class_reference == 5000
    assert config.synth_per_class == 1000 and config.seed == 0


def test_benchmark_config_has_long_spinegan_short_plain_and_three_seeds():
    bench = demo.MODES["benchmark"]
    arms = {v.name: v for v in bench.variants}
    main = ["stylegan2-ada", "spinegan"]
    assert list(arms)[:2] == main and bench.privacy_audit and not bench.pools
    for name in main:
        seeds = [arms[n].seed for n in arms if n == name or n.startswith(f"{name}-seed")]
        assert seeds == [None, 1, 2]  # None = the experiment's seed 0
        assert arms[f"{name}-seed2"].clinical_weight == arms[name].clinical_weight
    kimg = {name: bench.kimg_of(v) for name, v in arms.items()}
    assert kimg["spinegan"] == kimg["spinegan-seed2"] == demo.LONG_KIMG > demo.SHORT_KIMG == kimg["stylegan2-ada-seed1"]
    assert arms["stylegan2-ada-lesion"].labels == "lesion" and arms["stylegan2-ada-lesion"].clinical_weight == 0
    assert not any("--dp=1" in v.train_args for v in bench.variants)
    assert bench.phantom_train == 2 * demo.MODES["demo"].phantom_train


def test_the_dp_mode_sets_dp_sgd_the_private_critic_and_public_data_beside_the_non_private_arm():
    dp = demo.mode_config("dp", 0)
    dp.check()  # a valid experiment: no curve, no pools, every arm on the panel
    arms = {v.name: v for v in dp.variants}
    plain, sgd = arms["spinegan"], arms["spinegan-dp-sgd"]
    critic, public1 = arms["spinegan-dp-critic"], arms["spinegan-dp-public-eps1"]
    assert plain == demo.SPINEGAN and not plain.private
    assert sgd.train_args == demo.DP_VARIANT.train_args and "--aug=noaug" in sgd.train_args
    assert public1.train_args == demo.DP_PUBLIC_ARGS and "--dp-data-public=1" in public1.train_args
    # The critic arm reads the public draw beside its private images; its account is epsilon 10 with its judge's in.
    assert critic.needs_public_reals and "--dp-epsilon=10" in critic.train_args
    assert "--dp-private-batch=128" in critic.train_args and "--dp-critic-weight=0.3" in critic.train_args
    # The clinical loss weighs 0.1 in the critic arm as in the non-private one (RESULTS AB, AD); public data keeps 0.3.
    assert [arms[n].clinical_weight for n in arms] == [0.1, 0.1, 0.1, 0.3]
    # One account per arm: DP-SGD's and the critic's epsilon 10 include their judge's 1; the public-data arm's is its
    # judge's alone.
    assert [dp.dp_judge_epsilon_of(arms[n]) for n in arms] == [None, 1.0, 1.0, 1.0] and dp.dp_judge_epsilons() == [1.0]
    assert "--dp-epsilon=10" in sgd.train_args
    assert dp.kimg_of(plain) == dp.kimg_of(critic) == dp.kimg_of(public1) == demo.DP_KIMG > dp.kimg_of(sgd)
    # Every arm's images come from its snapshots 5 kimg apart: 20 to 60 kimg, the 30-kimg DP-SGD arm's 10 to 30.
    assert dp.synth_snapshots == demo.DP_TRAJECTORY == 9 and dp.snap == 5
    assert [dp.synth_snapshots_of(arms[n]) for n in arms] == [9, 5, 9, 9]
    assert [dp.kimg_of(arms[n]) - dp.snap * (dp.synth_snapshots_of(arms[n]) - 1) for n in arms] == [20, 10, 20, 20]
    assert dp.panel == demo.BENCHMARK.panel and dp.phantom_train == demo.BENCHMARK.phantom_train
    draws = {mode: {demo.mode_config(mode, s).draw_seed for s in (0, 2**20 - 1)} for mode in demo.MODES}
    assert not draws["dp"] & (draws["demo"] | draws["benchmark"])


@pytest.mark.parametrize("mode", sorted(demo.MODES))
def test_the_demo_says_how_long_it_takes_before_starting(tmp_path, monkeypatch, mode):
    from click.testing import CliRunner

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the first step")

    monkeypatch.setattr(demo, "run_experiment", stop)
    result = CliRunner().invoke(demo.main, ["--outdir", str(tmp_path), "--mode", mode])
    assert isinstance(result.exception, RuntimeError)  # the estimate came before any work
    assert f"Expect about {demo.MINUTES[mode]} minutes on 2 CPU cores in all" in result.output
    kimgs = {
        "demo": demo.DEMO.kimg,
        "benchmark": f"{demo.SHORT_KIMG} or {demo.LONG_KIMG}",
        "dp": f"{demo.SHORT_KIMG} or {demo.DP_KIMG}",
    }[mode]
    assert f"generator(s) of {kimgs} kimg, 32x32 phantom radiographs" in result.output


def test_headline_numbers_name_every_model():
    out = dict(
        downstream=dict(
            aucs={"real": 0.9, "synthetic-spinegan": 0.8, "real+synthetic-spinegan": 0.91},
            auc_cis={"real": [0.85, 0.94], "synthetic-spinegan": [0.74, 0.86]},
            ratios={"synthetic-spinegan": 0.8 / 0.9},
            ratio_cis={"synthetic-spinegan": [0.8, 0.95]},
            skills={"synthetic-spinegan": 0.75},
            skill_cis={"synthetic-spinegan": [0.6, 0.88]},
        ),
        classifier=dict(best_val_auc=0.95),
        **{
            "metrics/spinegan": dict(
                results=dict(
                    fid500_full=41.5,
                    label_fidelity8_auc=0.9,
                    label_fidelity8_normal_auc=0.9,
                    label_fidelity8_abnormal_auc=0.9,
                    label_fidelity8_accuracy=0.8,
                    pr5003_inception_recall=0.3,
                    independent_pr5003_spine_recall=0.45,
                    class_diff500_r=0.5,
                ),
                errors=dict(kid500="OSError: no Inception weights"),
            ),
            "metrics/real-vs-real": dict(
                results=dict(
                    fid500_full=12.0,
                    pr5003_inception_recall=0.6,
                    independent_pr5003_spine_recall=0.5,
                    class_diff500_r=0.75,
                )
            ),
        },
    )
    config = ExperimentConfig(variants=(Variant("spinegan", clinical_weight=0.1),), judge_half=True)
    lines = demo.headline_numbers(out, config)
    assert "0.900" in lines[0] and "95% CI 0.850-0.940" in lines[0]
    assert "0.800" in lines[1] and "95% CI 0.740-0.860" in lines[1]
    assert "skill ratio" in lines[2] and "0.75" in lines[2] and "paired 95% CI 0.600-0.880" in lines[2]
    assert "plain ratio" in lines[3] and "0.89" in lines[3] and "0.800-0.950" in lines[3]
    assert "0.910" in lines[4]
    assert (
        "  spinegan fid500_full (500 generated vs all training images, Inception features): 41.5000; real vs real "
        "12.0000 (500 test vs all training)"
    ) in lines
    assert (
        "  spinegan pr5003_inception_recall (500 generated vs 500 training images, Inception features): 0.3000; "
        "real vs real 0.6000 (500 test vs 500 training); recall / real 0.50"
    ) in lines
    assert (
        "  spinegan independent_pr5003_spine_recall (500 generated vs 500 half-B training images, the independent "
        "judge's features): 0.4500; real vs real 0.5000 (500 test vs 500 half-B training); recall / real 0.90"
    ) in lines
    assert (
        "  spinegan class_diff500_r (500 generated vs all training images, grey levels): 0.5000; real vs real 0.7500 "
        "(500 test vs all training)"
    ) in lines
    assert "  spinegan kid500: not computed (OSError: no Inception weights)" in lines
    assert not any(line.startswith("  real-vs-real") for line in lines)  # beside each figure, not on its own
    # one AUC under three names is one line that names them all
    assert (
        "  spinegan label_fidelity8_auc (also abnormal_auc, normal_auc) (8 generated per class, classified by the "
        "clinical judge): 0.9000"
    ) in lines
    assert sum("label_fidelity8" in line for line in lines) == 2
    assert not any("NOT above chance" in line for line in lines)
    out["downstream"]["auc_cis"]["synthetic-spinegan"] = [0.45, 0.56]
    assert any("spinegan-only classifier is NOT above chance" in line for line in demo.headline_numbers(out, config))


def test_the_clinical_loss_effect_is_printed_paired_by_seed_at_equal_kimg_only():
    skills = {
        f"synthetic-{name}{seed}": value
        for name, values in (("spinegan", (0.8, 0.9)), ("stylegan2-ada", (0.7, 0.6)))
        for seed, value in zip(("", "-seed1"), values)
    }
    out = dict(downstream=dict(skills=skills, ratios=dict.fromkeys(skills, 1.0)))
    variants = (Variant("stylegan2-ada"), Variant("spinegan", clinical_weight=0.1))
    variants += tuple(dataclasses.replace(v, name=f"{v.name}-seed1", seed=1) for v in variants)
    lines = demo.effect_lines(out, ExperimentConfig(variants=variants), *demo.CLINICAL_LOSS_PAIR)
    assert lines[0] == "  spinegan minus stylegan2-ada, paired by training seed over 2 seeds (95% t-interval):"
    assert lines[1].startswith("    skill ratio: +0.200 (")  # differences 0.1 and 0.3
    assert demo.CLINICAL_LOSS_PAIR == ("spinegan", "stylegan2-ada")
    assert all(arm in {v.name for v in demo.MODES["benchmark"].variants} for arm in demo.CLINICAL_LOSS_PAIR)
    # the benchmark's plain arm trains fewer kimg than its SpineGAN: no pair at the final snapshots, and it says why
    (line,) = demo.effect_lines(out, demo.mode_config("benchmark", 0), *demo.CLINICAL_LOSS_PAIR)
    assert line == (
        f"  the clinical loss at the final snapshots: not paired (spinegan trains {demo.LONG_KIMG} kimg and "
        f"stylegan2-ada {demo.SHORT_KIMG}: paired at equal kimg on the training curve only)"
    )


def test_a_dp_generators_audit_is_read_against_its_epsilon():
    figures = dict(mia_auc=0.52, mia_tpr_at_1pct_fpr=0.015, share_closer_to_train=0.51)
    account = dict(differentially_private=True, epsilon=2.0, delta=1e-5)
    (line,) = demo.privacy_lines("spinegan-dp", dict(privacy=dict(account=account), spaces=dict(pixel=figures)))
    assert "TPR at 1% FPR 0.015 (at most 0.0739 at epsilon 2)" in line  # e^2 * 0.01 + 1e-5
    (line,) = demo.privacy_lines("spinegan", dict(privacy=dict(guarantee="none recorded"), spaces=dict(pixel=figures)))
    assert "TPR at 1% FPR 0.015, share" in line
    inversion = dict(num_per_set=64, steps=100, mia_auc=0.61, mia_tpr_at_1pct_fpr=0.03)
    _, line = demo.privacy_lines(
        "spinegan", dict(privacy=dict(guarantee="none recorded"), spaces=dict(pixel=figures), inversion=inversion)
    )
    assert line == "  spinegan privacy (inversion, 64 per set): membership-inference AUC 0.610, TPR at 1% FPR 0.030"
    assert demo.MODES["benchmark"].privacy_inversion == 64 and demo.MODES["demo"].privacy_inversion == 0


@pytest.mark.slow
def test_tiny_story_end_to_end_with_real_training(tmp_path):
    """Phantom -> import -> classifier -> train.py with the clinical loss -> synthesis -> metric -> downstream ->
    report, with the real train.py (1 kimg at 16x16)."""
    config = ExperimentConfig(
        phantom_train=48,
        phantom_test=24,
        phantom_size=64,
        resolution=16,
        classifier_epochs=2,
        classifier_patience=1,
        kimg=1,
        snap=1,
        variants=(Variant("spinegan", 0.1),),
        synth_per_class=8,
        metrics=("label_fidelity8",),
        downstream_epochs=1,
        downstream_patience=1,
        n_resamples=20,
    )
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    meta = load_network_pkl(out["train/spinegan"]["snapshot"])["metadata"]
    assert meta["clinical_loss"]["weight"] == 0.1 and meta["cur_nimg"] >= 1000
    options = json.loads(open(f"{out['train/spinegan']['run_dirs'][-1]}/training_options.json").read())
    assert options["clinical"]["classifier"] == out["classifier"]["classifier"]
    assert set(out["downstream"]["aucs"]) == {"real", "synthetic-spinegan", "real+synthetic-spinegan"}
    assert "Loss/G/clinical" in open(f"{out['train/spinegan']['run_dirs'][-1]}/stats.jsonl").read()
    assert "clinical loss" in open(out["report"]["report"]).read()


def test_every_mode_follows_its_seed_and_the_modes_never_share_a_draw():
    from spine.pipeline.arms import panel_variants

    for seed in (0, 11, 2**20 - 1):
        small, big = demo.mode_config("demo", seed), demo.mode_config("benchmark", seed)
        assert small.seed == big.seed == seed and small.draw_seed == seed != big.draw_seed
        assert big.draw_seed not in {demo.mode_config("demo", s).draw_seed for s in (0, 11, 2**20 - 1)}
        seeds = {v.name: v.seed for v in big.variants if v.seed is not None}
        assert seeds == {f"{arm}-seed{seed + k}": seed + k for k in (1, 2) for arm in ("stylegan2-ada", "spinegan")}
    variants = panel_variants(demo.mode_config("benchmark", 11), "abnormality")
    assert variants == {  # the full panel scores every single generator, each arm over its seeds
        "stylegan2-ada (3 seeds)": ["stylegan2-ada", "stylegan2-ada-seed12", "stylegan2-ada-seed13"],
        "spinegan (3 seeds)": ["spinegan", "spinegan-seed12", "spinegan-seed13"],
    }
    assert len(demo.DEMO.panel) >= 3 and any(m.endswith(":dataset") for m in demo.DEMO.panel)
    assert (
        demo.BENCHMARK.panel == tuple(m.name for m in demo.FULL_PANEL) and "densenet121:dataset" in demo.BENCHMARK.panel
    )


def test_arms_of_different_training_lengths_say_theirs():
    bench = demo.mode_config("benchmark", 0)
    assert demo.training_length_lines(bench) == [
        f"  training per generator: stylegan2-ada {demo.SHORT_KIMG} kimg, spinegan {demo.LONG_KIMG} kimg, "
        f"stylegan2-ada-lesion {demo.SHORT_KIMG} kimg"
    ]
    assert demo.training_length_lines(demo.mode_config("dp", 0)) == [
        f"  training per generator: spinegan {demo.DP_KIMG} kimg, spinegan-dp-sgd {demo.SHORT_KIMG} kimg, "
        f"spinegan-dp-critic {demo.DP_KIMG} kimg, spinegan-dp-public-eps1 {demo.DP_KIMG} kimg"
    ]
    assert demo.training_length_lines(demo.DEMO) == []  # equal training: nothing to say
    down = dict(aucs={"real": 0.9, "synthetic-spinegan": 0.8}, ratios={"synthetic-spinegan": 0.8 / 0.9})
    lines = demo.downstream_lines(down, bench, "abnormality")
    assert f"  (spinegan: one generator of {demo.LONG_KIMG} kimg, 1000 images per class)" in lines


def test_the_benchmark_draws_the_curve_at_equal_kimg_for_both_arms():
    bench = demo.mode_config("benchmark", 11)
    bench.check()
    assert (
        bench.curve_kimg == (10, 20, demo.SHORT_KIMG)
        and all(bench.kimg_of(v) % bench.snap == 0 for v in bench.variants)
        and all(k % bench.snap == 0 for k in bench.curve_kimg)
    )
    assert bench.curve_arms == demo.CLINICAL_LOSS_PAIR and bench.curve_panel == ("patch_cnn:blurred_image",)
    assert set(bench.curve_thresholds) <= {
        "independent_label_fidelity500_auc",
        "pr2k3_spine_recall",
        "skill/patch_cnn:blurred_image",
    }
    assert set(bench.curve_metrics) <= set(bench.metrics)


def test_matched_comparisons_and_the_curve_are_printed_saying_what_each_arm_is():
    row = dict(
        left="spinegan-pooled",
        left_is="pooled: 3 generators",
        right=["spinegan-pooled-matched"],
        auc_difference=0.012,
        auc_ci=[-0.01, 0.03],
    )
    lines = demo.matched_lines(dict(rows=[row]))
    assert "comparisons with the paper use single generators" in lines[0]
    assert (
        lines[1]
        == "    spinegan-pooled (pooled: 3 generators) minus spinegan-pooled-matched: AUC +0.012 (-0.010 to +0.030)"
    )
    difference = dict(mean=0.05, low=-0.01, high=0.11, num_pairs=3)
    summary = dict(
        kimg=[10, 20],
        pair=dict(treated="spinegan", control="stylegan2-ada", seeds=[0, 1, 2]),
        differences={"20": {"pr2k3_spine_recall": difference}},
        to_threshold={
            "pr2k3_spine_recall": dict(
                threshold=0.15, direction="at or above", difference=dict(mean=-5.0, low=-20.0, high=10.0, num_pairs=2)
            )
        },
    )
    lines = demo.curve_lines(dict(summary=summary))
    assert "paired by seed [0, 1, 2]" in lines[0] and "training randomness" in lines[0]
    assert lines[1] == "    pr2k3_spine_recall at 20 kimg: +0.050 (-0.010 to +0.110), 3 pairs"
    assert lines[2] == "    kimg to pr2k3_spine_recall at or above 0.15: -5.0 (-20.0 to +10.0), 2 pairs kimg"


def test_the_panel_is_printed_first_with_every_member():
    panel = dict(
        members=["patch_cnn:blurred_image", "small_cnn:dataset"],
        variants={
            "spinegan": dict(
                lowest_skill=0.37,
                lowest_skill_ci=[0.2, 0.48],
                lowest_member="small_cnn:dataset",
                interval_covers="test studies",
                members={
                    "patch_cnn:blurred_image": dict(
                        skill=0.81, skill_ci=[0.73, 0.89], real_auc=0.895, synthetic_auc=0.822
                    ),
                    "small_cnn:dataset": dict(skill=0.37, skill_ci=[0.2, 0.48], real_auc=0.878, synthetic_auc=0.639),
                },
            )
        },
    )
    lines = demo.panel_lines(panel)
    assert lines[1] == (
        "    spinegan: lowest skill ratio 0.37 (95% CI 0.200-0.480, over test studies), by small_cnn:dataset"
    )
    assert lines[3] == (
        "      small_cnn:dataset: skill 0.37 (0.200-0.480), real-trained AUC 0.878, synthetic-trained 0.639"
    )


def test_the_demo_measures_fidelity_beside_its_baseline_with_an_independent_judge():
    """Issue 27's fidelity: Inception FID and precision/recall, the independent judge's precision/recall and the
    class difference, all at the size of the demo's test split, so that their real-vs-real baselines match."""
    from metrics.metric_names import parse_metric
    from spine.evaluation.panel import PanelMember
    from spine.pipeline.experiment import baseline_metric_names

    config = demo.DEMO
    assert {"fid500", "pr5003_inception", "pr5003_spine", "class_diff500"} <= set(config.metrics)
    assert baseline_metric_names(config) == ["fid500", "pr5003_inception", "pr5003_spine", "class_diff500"]
    assert all(parse_metric(m).count == config.phantom_test for m in baseline_metric_names(config))
    judge = PanelMember.parse(config.judge)
    assert judge.arch != config.classifier_arch and judge.input_norm == "dataset" and config.judge_half
