"""The step runner of an experiment: named steps run once, with done-markers, and the subprocesses they start.

Each step writes <outdir>/steps/<step>.json (its outputs, seconds taken) when it finishes; a restarted experiment
reads a finished step's outputs back instead of running it again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dnnlib

REPO_ROOT = Path(__file__).resolve().parents[2]


def code_version() -> dict[str, Any]:
    """The commit the code runs from and whether tracked files differ from it (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return dict(commit=commit, modified=None if changes is None else bool(changes))


class Steps:
    """Runs named steps once: a finished step's outputs are read back from its marker instead of recomputed."""

    def __init__(self, outdir: str | Path, log: Callable[[str], None] = print):
        self.outdir = Path(outdir)
        self.log = log
        self.timings: dict[str, float] = {}

    def marker(self, name: str) -> Path:
        return self.outdir / "steps" / f"{name.replace('/', '--')}.json"

    def workdir(self, name: str) -> Path:
        return self.outdir / name

    def run(self, name: str, fn: Callable[[Path], dict[str, Any]], keep_partial: bool = False) -> dict[str, Any]:
        """`fn(workdir)` -> outputs (plain data). Skipped when finished earlier; else its workdir is cleared first
        (unless `keep_partial`: the step continues what an interrupted attempt left, e.g. a GAN checkpoint)."""
        marker = self.marker(name)
        if marker.is_file():
            record = json.loads(marker.read_text())
            self.timings[name] = record["seconds"]
            self.log(f"[{name}] done earlier ({record['seconds']:.0f} s), skipped")
            return record["outputs"]
        workdir = self.workdir(name)
        if workdir.exists() and not keep_partial:
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.log(f"[{name}] started")
        start = time.time()
        outputs = fn(workdir)
        seconds = time.time() - start
        with dnnlib.atomic_write(marker, "w") as f:
            json.dump(dict(step=name, outputs=outputs, seconds=seconds, finished=time.time()), f, indent=1)
        self.timings[name] = seconds
        self.log(f"[{name}] finished in {seconds:.0f} s")
        return outputs


def run_logged(
    cmd: list[str],
    log_path: Path,
    echo: Callable[[str], bool],
    log: Callable[[str], None],
    env: dict[str, str] | None = None,
) -> None:
    """Run a command, all output to `log_path`, lines for which `echo(line)` holds also to `log`."""
    with open(log_path, "a") as log_file:
        process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT, bufsize=1, env=env
        )
        assert process.stdout is not None
        for line in process.stdout:
            log_file.write(line)
            if echo(line):
                log(line.rstrip())
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"{cmd[1]} failed with exit code {code}; see {log_path}. Last lines:\n{log_tail(log_path)}")


def log_tail(log_path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log (what a failure message quotes)."""
    return "".join(Path(log_path).read_text().splitlines(keepends=True)[-lines:])
