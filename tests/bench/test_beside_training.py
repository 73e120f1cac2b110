"""bench/beside_training.py: the experiment's training command shortened, and folders that are not experiments
refused in one line."""

import importlib.util
import json
import sys
from pathlib import Path

from click.testing import CliRunner

_SPEC = importlib.util.spec_from_file_location(
    "beside_training", Path(__file__).resolve().parents[2] / "bench" / "beside_training.py"
)
beside_training = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(beside_training)


def write_step(root: Path, name: str, outputs: dict) -> None:
    (root / "steps").mkdir(parents=True, exist_ok=True)
    (root / "steps" / f"{name}.json").write_text(json.dumps(dict(step=name, outputs=outputs, seconds=1.0)))


def test_the_training_command_is_the_experiments_own_shortened(tmp_path):
    command = ["/repo/train.py", "--outdir=/x", "--data=d.zip", "--kimg=70", "--snap=10", "--seed=43", "--cond=1"]
    write_step(tmp_path, "train--spinegan", dict(command=command))
    assert beside_training.train_command(tmp_path, "/out", 6) == [
        sys.executable,
        "/repo/train.py",
        "--outdir=/out",
        "--kimg=6",
        f"--snap={10**6}",
        "--data=d.zip",
        "--seed=43",
        "--cond=1",
    ]


def test_a_folder_that_is_not_a_trained_experiment_gets_one_line(tmp_path):
    result = CliRunner().invoke(beside_training.main, ["--experiment", str(tmp_path)])
    assert result.exit_code == 2 and "not an experiment folder that has imported its training images" in result.output
    write_step(tmp_path, "data--train", dict(dataset="train.zip"))
    result = CliRunner().invoke(beside_training.main, ["--experiment", str(tmp_path)])
    assert result.exit_code == 2 and "expected one finished train step, found 0" in result.output
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["data--train.json"]  # nothing written
