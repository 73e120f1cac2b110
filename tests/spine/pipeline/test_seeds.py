"""spine.pipeline.seeds and .arms: an experiment's arms read from its config, Student-t intervals over training
seeds and differences paired by seed, on known answers."""

import dataclasses

import pytest

from spine.evaluation.arms import Arm
from spine.pipeline import seeds
from spine.pipeline.arms import replicate_groups, synthetic_arms, training_seed
from spine.pipeline.config import DP_VARIANT, ExperimentConfig, Pool, Variant


def test_across_seeds_is_the_student_t_interval():
    mean, low, high = seeds.across_seeds([1.0, 2.0, 3.0])
    # Student t with 2 df has CDF 1/2 + t / (2 sqrt(2 + t^2)), so its 97.5% point solves t / sqrt(2 + t^2) = 0.95.
    t975 = (2 * 0.95**2 / (1 - 0.95**2)) ** 0.5
    half = t975 * 1.0 / 3**0.5  # sample sd of [1, 2, 3] is 1
    assert mean == 2.0 and low == pytest.approx(2 - half, abs=1e-12) and high == pytest.approx(2 + half, abs=1e-12)
    with pytest.raises(ValueError, match="two values"):
        seeds.across_seeds([0.7])


def test_replicates_are_found_in_the_config_and_summarised():
    config = ExperimentConfig(
        variants=(
            Variant("a", 0.1),
            Variant("a-seed1", 0.1, seed=1),
            Variant("b", 0.1, ("--x",)),
            Variant("a-seed2", 0.1, seed=2),
            Variant("c", seed=4),
        )
    )
    groups = replicate_groups(config)
    assert groups == {"a": [Arm("synthetic", "a", 0), Arm("synthetic", "a-seed1", 1), Arm("synthetic", "a-seed2", 2)]}
    assert [arm.key for arm in groups["a"]] == ["synthetic-a", "synthetic-a-seed1", "synthetic-a-seed2"]
    down = dict(
        aucs={"synthetic-a": 0.7, "synthetic-a-seed1": 0.8, "synthetic-b": 0.6},
        skills={"synthetic-a": 0.5, "synthetic-a-seed1": 0.7, "synthetic-b": 0.2},
    )
    summary = seeds.group_summaries(down, config)
    assert list(summary) == ["a"] and summary["a"]["num_seeds"] == 2
    assert summary["a"]["auc"] == pytest.approx(seeds.across_seeds([0.7, 0.8]), abs=1e-12)
    assert summary["a"]["skill"][0] == pytest.approx(0.6, abs=1e-12)


def test_differences_are_paired_by_seed():
    skills = {
        "synthetic-spinegan": 0.80,
        "synthetic-spinegan-seed1": 0.90,
        "synthetic-spinegan-seed2": 0.70,
        "synthetic-stylegan2-ada": 0.70,
        "synthetic-stylegan2-ada-seed1": 0.60,
        "synthetic-stylegan2-ada-seed2": 0.65,
        "synthetic-spinegan-dp": 0.10,
        "synthetic-spinegan-seed3": 0.5,
    }
    recall = {
        "spinegan": 0.50,
        "spinegan-seed1": 0.40,
        "spinegan-seed2": 0.45,
        "stylegan2-ada": 0.60,
        "stylegan2-ada-seed1": 0.60,
        "stylegan2-ada-seed2": 0.50,
        "spinegan-dp": 0.1,
    }
    steps = dict(
        downstream=dict(skills=skills, ratios=dict.fromkeys(skills, 1.0)),
        **{
            f"metrics/{name}": dict(results=dict(pr2k3_spine_recall=value, num_images=10))
            for name, value in recall.items()
        },
    )
    spinegan = Variant("spinegan", 0.1)
    variants = [spinegan, Variant("stylegan2-ada"), DP_VARIANT]
    variants += [
        dataclasses.replace(v, name=f"{v.name}-seed{seed}", seed=seed) for seed in (1, 2) for v in variants[:2]
    ]
    variants.append(dataclasses.replace(spinegan, name="spinegan-seed3", seed=3))
    config = ExperimentConfig(variants=tuple(variants))
    num_pairs, effects = seeds.paired_differences(steps, config, "spinegan", "stylegan2-ada")
    # seeds 0, 1, 2 pair up; the DP arm and the unmatched seed3 do not; integer counts are not metrics
    assert num_pairs == 3 and list(effects) == ["skill ratio", "plain ratio", "pr2k3_spine_recall"]
    assert effects["skill ratio"] == pytest.approx(seeds.across_seeds([0.10, 0.30, 0.05]), abs=1e-12)
    assert effects["plain ratio"] == (0.0, 0.0, 0.0)
    assert effects["pr2k3_spine_recall"] == pytest.approx(seeds.across_seeds([-0.10, -0.20, -0.05]), abs=1e-12)
    del skills["synthetic-stylegan2-ada-seed1"], skills["synthetic-stylegan2-ada-seed2"]
    assert seeds.paired_differences(steps, config, "spinegan", "stylegan2-ada") == (1, {})  # one pair has no interval
    # trained for different kimg, the arms are no pairs: the difference would mix the loss with training length
    assert seeds.kimg_mismatch(config, "spinegan", "stylegan2-ada") is None
    longer = ExperimentConfig(
        kimg=10, variants=tuple(dataclasses.replace(v, kimg=30) if "spinegan" in v.name else v for v in variants)
    )
    assert seeds.paired_differences(steps, longer, "spinegan", "stylegan2-ada") == (0, {})
    assert seeds.kimg_mismatch(longer, "spinegan", "stylegan2-ada") == (
        "spinegan trains 30 kimg and stylegan2-ada 10: paired at equal kimg on the training curve only"
    )


def test_synthetic_arms_of_a_label_mode_in_the_tables_order():
    config = ExperimentConfig(
        seed=7,
        variants=(Variant("a"), Variant("l", labels="lesion"), Variant("b", seed=2)),
        pools=(Pool("ab", ("a", "b")),),
    )
    assert synthetic_arms(config, "abnormality") == [
        Arm("synthetic", "a", 7),
        Arm("synthetic", "b", 2),
        Arm("synthetic", "ab", pool=True),
        Arm("synthetic", "ab-matched", pool=True),  # the pool at one member's image count
    ]
    assert synthetic_arms(dataclasses.replace(config, pool_matched=False), "abnormality")[-1].variant == "ab"
    assert synthetic_arms(config, "lesion") == [Arm("synthetic", "l", 7)]
    assert training_seed(config, config.variants[2]) == 2
