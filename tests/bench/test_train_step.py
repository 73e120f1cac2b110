"""bench/train_step.py: its options are checked before anything is timed."""

import importlib.util
import os
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


def test_time_alternated_forces_each_arms_ops_and_restores_the_environment(monkeypatch):
    monkeypatch.setenv(train_step.custom_ops.IMPL_ENV_VAR, "auto")
    seen = []

    class Phase:
        @staticmethod
        def update(phase, loss, rounds):
            seen.append(os.environ[train_step.custom_ops.IMPL_ENV_VAR])

    arms = {arm: ((None, {"Gmain": Phase}, None, None), impl) for arm, impl in (("ref", "ref"), ("env", None))}
    wall, cpu = train_step.time_alternated(arms, ["Gmain"], repeats=2)
    assert seen == ["ref", "auto"] * 3  # a warm-up round, then two repeats
    assert [len(wall[arm, "Gmain"]) for arm in arms] == [2, 2] == [len(cpu[arm, "Gmain"]) for arm in arms]
    assert os.environ[train_step.custom_ops.IMPL_ENV_VAR] == "auto"
