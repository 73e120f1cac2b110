"""spine.evaluation.arms: an arm is a value that knows its name in the downstream table."""

import pytest

from spine.evaluation.arms import Arm


def test_an_arm_knows_its_name_in_the_downstream_table():
    assert Arm("real").key == "real"
    assert Arm("synthetic", "spinegan", 1).key == "synthetic-spinegan"
    assert Arm("mixed", "spinegan", 1).key == "real+synthetic-spinegan"
    with pytest.raises(ValueError, match="needs a generator"):
        Arm("synthetic")
    with pytest.raises(ValueError, match="expected one of"):
        Arm("fake", "x")
