"""training.run_warnings through train.py: runs that start but are unlikely to be meant get one warning line each,
before the run folder exists (here: a dry run)."""

from click.testing import CliRunner
from test_train import write_dataset

import train


def warnings_of(*args: str) -> list[str]:
    result = CliRunner().invoke(train.main, ["--dry-run", *args])
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line.startswith("Warning:")]


def test_a_one_image_dataset_and_cpu_hours_of_fid_are_warned_of(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    one = write_dataset(str(tmp_path / "one"), n=1, res=16)
    warnings = warnings_of("--outdir", str(tmp_path / "runs"), "--data", one)  # --cfg=auto: fid50k_full
    assert len(warnings) == 2
    assert (
        warnings[0] == f"Warning: --data={one}: training on 1 image; a GAN memorises so few (ADA's smallest "
        f"datasets had 1,000)"
    )
    assert warnings[1].startswith(
        "Warning: fid50k_full on a CPU: Inception features of 50000 generated images take about 7 h per evaluation"
    )


def test_a_small_count_fid_is_warned_of_and_a_plain_run_is_not(tmp_path):
    data = write_dataset(str(tmp_path / "ds"), n=128, res=16)
    assert warnings_of("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo") == []
    warnings = warnings_of("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--metrics", "fid200")
    assert len(warnings) == 1 and "fid200 compares only 200 images: FID is biased upward" in warnings[0]
