"""bench/train_step.py: its options are checked before anything is timed."""

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner

_SPEC = importlib.util.spec_from_file_location(
    "train_step", Path(__file__).resolve().parents[2] / "bench" / "train_step.py"
)
train_step = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(train_step)


@pytest.mark.parametrize("option", [["--batch", "32"], ["--fp32-batch", "16"]])
def test_batch_options_need_the_bf16_section(option):
    result = CliRunner().invoke(train_step.main, ["--config", "demo", "--skip-phases", *option])
    assert result.exit_code == 2
    assert "add --bf16" in result.output and "torch " not in result.output  # refused before any timing starts


def test_fp32_batch_below_two_is_refused():
    result = CliRunner().invoke(train_step.main, ["--bf16", "--fp32-batch", "1"])
    assert result.exit_code == 2 and "--fp32-batch" in result.output
