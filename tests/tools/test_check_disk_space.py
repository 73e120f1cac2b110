"""tools/check_disk_space.py: the install's disk check, against the free space the OS reports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tools", "check_disk_space.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, check=False)


def test_enough_space_passes_silently(tmp_path):
    result = _run(str(tmp_path), "0")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_too_little_space_names_path_and_both_amounts(tmp_path):
    free = shutil.disk_usage(tmp_path).free / 1024**3
    needed = free * 2 + 1
    result = _run(str(tmp_path), f"{needed:g}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(tmp_path) in lines[0] and f"{needed:g} GiB needed" in lines[0]
    reported = float(lines[0].split(": ")[1].split(" GiB free")[0])
    assert reported == pytest.approx(free, abs=0.2)  # the disk may change a little between the two readings


@pytest.mark.parametrize("args", [(), ("/",), ("/", "lots")])
def test_bad_arguments_exit_2_with_one_line(args):
    result = _run(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_folder_exits_2_naming_it(tmp_path):
    missing = str(tmp_path / "no-such-folder")
    result = _run(missing, "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0] and "Traceback" not in result.stderr
