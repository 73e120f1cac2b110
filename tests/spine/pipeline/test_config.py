"""The experiment configs committed under docs/experiments: RESULTS quotes each as the command that reproduces a
table, so each must still be a valid config after the config's fields change."""

from pathlib import Path

import pytest

from spine.pipeline.config import load_config

COMMITTED = sorted((Path(__file__).resolve().parents[3] / "docs" / "experiments").glob("*.json"))


def test_the_committed_configs_are_found():
    assert len(COMMITTED) >= 30  # a moved folder would otherwise leave the test below with nothing to check


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_a_committed_config_loads_with_its_variants(path):
    config = load_config(str(path), {})
    names = config.arm_names()
    assert names and len(set(names)) == len(names)
