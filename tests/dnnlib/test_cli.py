"""dnnlib.cli: the seed-range parser every generation tool uses."""

import click
import pytest

from dnnlib import MAX_SEED
from dnnlib.cli import parse_range


def test_parse_range():
    assert parse_range("0-3") == [0, 1, 2, 3]
    assert parse_range("1,2,5") == [1, 2, 5]
    assert parse_range("0-1,7") == [0, 1, 7]


@pytest.mark.parametrize("text", ["x", "3-1", f"0-{MAX_SEED + 1}", ""])
def test_parse_range_refuses_bad_seeds(text):
    with pytest.raises(click.BadParameter):
        parse_range(text)
