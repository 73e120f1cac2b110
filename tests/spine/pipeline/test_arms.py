"""spine.pipeline.arms: arms as values, named in the downstream table's terms, read from the config."""

import pytest

from spine.pipeline.arms import Arm, synthetic_arms, training_seed
from spine.pipeline.config import ExperimentConfig, Pool, Variant


def test_an_arm_knows_its_name_in_the_downstream_table():
    assert Arm("real").key == "real"
    assert Arm("synthetic", "spinegan", 1).key == "synthetic-spinegan"
    assert Arm("mixed", "spinegan", 1).key == "real+synthetic-spinegan"
    with pytest.raises(ValueError, match="needs a generator"):
        Arm("synthetic")
    with pytest.raises(ValueError, match="expected one of"):
        Arm("fake", "x")


def test_synthetic_arms_of_a_label_mode_in_the_tables_order():
    config = ExperimentConfig(seed=7, variants=(Variant("a"), Variant("l", labels="lesion"), Variant("b", seed=2)),
                              pools=(Pool("ab", ("a", "b")),))
    assert synthetic_arms(config, "abnormality") == [Arm("synthetic", "a", 7), Arm("synthetic", "b", 2),
                                                     Arm("synthetic", "ab", pool=True)]
    assert synthetic_arms(config, "lesion") == [Arm("synthetic", "l", 7)]
    assert training_seed(config, config.variants[2]) == 2
