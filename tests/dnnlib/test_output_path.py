"""dnnlib.output_path: a tool learns that it cannot write its outputs before it does any work.

Tests here run as root, and root ignores permission bits (a chmod 0500 folder stays writable to it). So the
refusals are shown with folders that refuse root too: a path whose parent is a regular file, and /sys (sysfs
refuses new files to every user); a monkeypatched mkstemp stands for the remaining case of a read-only mount.
"""

import errno
import os
import shutil
import sys

import bad_inputs
import click
import pytest
from click.testing import CliRunner

import dnnlib
from dnnlib import output_path


def test_new_paths_in_writable_folders_pass_and_leave_nothing(tmp_path):
    before = bad_inputs.tree(tmp_path)
    for path in (tmp_path, tmp_path / "new" / "deeper" / "out.zip", tmp_path / "out.pkl"):
        dnnlib.check_output_path(path, "--out")
    assert bad_inputs.tree(tmp_path) == before


def test_the_folder_written_is_the_nearest_existing_one(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "f").write_text("")
    assert output_path.writable_folder(tmp_path / "a") == str(tmp_path / "a")
    assert output_path.writable_folder(tmp_path / "a" / "b" / "c.png") == str(tmp_path / "a")
    assert output_path.writable_folder(tmp_path / "f") == str(tmp_path)
    assert output_path.writable_folder(tmp_path / "f" / "x" / "y") == str(tmp_path / "f")


def test_a_path_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(dnnlib.UserError, match=r"^--outdir=.*/f/runs: .*/f is a file, not a folder"):
        dnnlib.check_output_path(tmp_path / "f" / "runs", "--outdir")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.isdir("/sys/kernel"), reason="needs sysfs")
def test_a_folder_that_refuses_even_root_is_refused():
    with pytest.raises(dnnlib.UserError, match=r"^--out=/sys/new/x.png: cannot write in /sys \("):
        dnnlib.check_output_path("/sys/new/x.png", "--out")


def test_a_read_only_folder_is_refused_and_named(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(output_path.tempfile, "mkstemp", refuse)
    with pytest.raises(dnnlib.UserError, match=rf"cannot write in {tmp_path} \(Read-only file system\)"):
        dnnlib.check_output_path(tmp_path / "out", "--dest")


def test_free_space_is_checked_against_the_bytes_needed(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(output_path.shutil, "disk_usage", lambda path: usage._replace(free=1536))
    dnnlib.check_output_path(tmp_path / "a", "--dest", needed_bytes=1536)
    with pytest.raises(dnnlib.UserError, match=r"--dest=.*: 1.5 KiB free on its file system, 2.0 KiB needed"):
        dnnlib.check_output_path(tmp_path / "a", "--dest", needed_bytes=2048)


def test_the_click_type_refuses_while_parsing_with_exit_1(tmp_path):
    ran = []

    @click.command()
    @click.option("--out", type=dnnlib.OutputPath(dir_okay=False))
    def tool(out):
        ran.append(out)

    (tmp_path / "f").write_text("")
    before = bad_inputs.tree(tmp_path)
    bad_inputs.assert_refused(
        CliRunner().invoke(tool, ["--out", str(tmp_path / "f" / "x.pkl")]),
        "is a file, not a folder",
        root=tmp_path,
        before=before,
    )
    assert ran == []
    result = CliRunner().invoke(tool, ["--out", str(tmp_path)])  # click.Path's own rule: a usage error
    assert result.exit_code == 2 and "is a directory" in result.output
    assert CliRunner().invoke(tool, ["--out", str(tmp_path / "new.pkl")]).exit_code == 0


def test_replace_folder_swaps_whole_folders_and_leaves_nothing_aside(tmp_path):
    for name, files in (("new", ["a"]), ("dest", ["b", "c"])):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_text(name)
    dnnlib.replace_folder(tmp_path / "new", tmp_path / "dest")
    assert bad_inputs.tree(tmp_path) == {"dest", "dest/a"}
    (tmp_path / "new2").mkdir()
    dnnlib.replace_folder(tmp_path / "new2", tmp_path / "absent")
    assert bad_inputs.tree(tmp_path) == {"dest", "dest/a", "absent"}
