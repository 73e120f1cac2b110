"""training.resume_source through train.py: --resume is found and checked before anything else (issue 32).

Each refusal is one `Error:` line with exit status 1 and leaves no run folder; none of them needs --data, which a
continued run takes from its checkpoint.
"""

import os

import bad_inputs
import pytest
import requests
import torch
from click.testing import CliRunner
from test_train import write_dataset

import dnnlib
import train
from training import checkpoint as ckpt
from training.resume_source import newest_checkpoint


def invoke(*args: str):
    return CliRunner().invoke(train.main, list(args))


def started_run(tmp_path, captured, kimg: str = "0.1") -> dnnlib.EasyDict:
    """The options of a demo run (launch is recorded, not run)."""
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--kimg", kimg)
    assert result.exit_code == 0, result.output
    return captured.pop()


def checkpoint_at(path, args, cur_nimg: int) -> str:
    """A file that reads as `args`'s checkpoint after `cur_nimg` images."""
    torch.save(
        dict(
            format=ckpt.FORMAT,
            options=ckpt.plain(train.run_options(args)),
            progress=dict(cur_nimg=cur_nimg, cur_tick=1, batch_idx=cur_nimg // 16, tick_start_nimg=0),
        ),
        path,
    )
    return str(path)


@pytest.mark.parametrize("case", ["missing", "truncated", "empty folder", "text"])
def test_a_bad_resume_is_named_before_data_is_asked_for(tmp_path, captured, case):
    args = started_run(tmp_path, captured)
    whole = checkpoint_at(tmp_path / "whole.pt", args, 64)
    paths = dict(
        missing=str(tmp_path / "missing.pt"),
        truncated=str(tmp_path / "truncated.pt"),
        text=str(bad_inputs.text_file(tmp_path / "notes.txt")),
        **{"empty folder": str(tmp_path / "empty")},
    )
    with open(whole, "rb") as f:
        (tmp_path / "truncated.pt").write_bytes(f.read()[:200])
    (tmp_path / "empty").mkdir()
    messages = {
        "missing": f"--resume={paths['missing']}: no such file",
        "truncated": f"--resume: {paths['truncated']}:",
        "empty folder": f"--resume={paths['empty folder']}: a folder with no checkpoint.pt",
        "text": f"--resume: {paths['text']}: not a network snapshot",
    }
    before = bad_inputs.tree(tmp_path)
    result = invoke("--outdir", str(tmp_path / "runs"), "--resume", paths[case])
    bad_inputs.assert_refused(result, messages[case], root=tmp_path, before=before)
    assert "--data is required" not in result.output and not captured


def test_a_run_folder_or_a_folder_of_runs_resumes_the_newest_checkpoint(tmp_path, captured):
    args = started_run(tmp_path, captured)
    runs = tmp_path / "runs"
    for name in ("00003-a", "00010-b", "00011-c"):  # 00011 has no checkpoint yet: 00010 is the newest to continue
        (runs / name).mkdir(parents=True)
    for name in ("00003-a", "00010-b"):
        checkpoint_at(runs / name / "checkpoint.pt", args, 64)
    assert newest_checkpoint(str(runs)) == str(runs / "00010-b" / "checkpoint.pt")
    assert newest_checkpoint(str(runs / "00003-a")) == str(runs / "00003-a" / "checkpoint.pt")
    result = invoke("--outdir", str(runs), "--resume", str(runs))
    assert result.exit_code == 0, result.output
    assert captured[0].resume_checkpoint == str(runs / "00010-b" / "checkpoint.pt")
    assert os.path.basename(captured[0].run_dir) == "00012-ds-demo-kimg0.1-continued"


@pytest.mark.parametrize("kimg, refused", [(None, True), ("0.064", True), ("0.05", True), ("0.08", False)])
def test_kimg_at_or_below_the_progress_is_refused_naming_it(tmp_path, captured, kimg, refused):
    args = started_run(tmp_path, captured, kimg="0.064")
    path = checkpoint_at(tmp_path / "checkpoint.pt", args, 64)
    before = bad_inputs.tree(tmp_path)
    result = invoke("--outdir", str(tmp_path / "runs"), "--resume", path, *(["--kimg", kimg] if kimg else []))
    if refused:
        bad_inputs.assert_refused(
            result,
            f"--kimg={kimg or '0.064'}: the checkpoint {path} is already at 0.064 kimg; give a larger --kimg",
            root=tmp_path,
            before=before,
        )
    else:
        assert result.exit_code == 0, result.output


def test_an_official_name_that_cannot_be_fetched_fails_before_the_run_folder(tmp_path, captured, monkeypatch):
    data = write_dataset(str(tmp_path / "ds"), res=256, n=2)
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path.parent / f"{tmp_path.name}-cache"))

    def offline(*args, **kwargs):
        raise requests.ConnectionError("Failed to resolve 'nvlabs-fi-cdn.nvidia.com'")

    monkeypatch.setattr(requests, "get", offline)
    before = bad_inputs.tree(tmp_path)
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--resume", "ffhq256")
    bad_inputs.assert_refused(
        result, "--resume=ffhq256: Cannot download https://nvlabs-fi-cdn.nvidia.com/", root=tmp_path, before=before
    )
    assert "place the file at" in result.output and not captured


def test_a_continued_run_needs_room_for_a_checkpoint_as_large_as_its_own(tmp_path, captured, monkeypatch):
    import shutil

    from dnnlib import output_path

    args = started_run(tmp_path, captured)
    path = checkpoint_at(tmp_path / "checkpoint.pt", args, 64)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(output_path.shutil, "disk_usage", lambda p: usage._replace(free=os.path.getsize(path) - 1))
    before = bad_inputs.tree(tmp_path)
    bad_inputs.assert_refused(
        invoke("--outdir", str(tmp_path / "runs"), "--resume", path, "--kimg", "1"),
        "free on its file system",
        root=tmp_path,
        before=before,
    )
    monkeypatch.setattr(output_path.shutil, "disk_usage", lambda p: usage._replace(free=os.path.getsize(path)))
    assert invoke("--outdir", str(tmp_path / "runs"), "--resume", path, "--kimg", "1").exit_code == 0
