"""Run directories: `<outdir>/<00000 next id>-<description>`, never reusing an existing one; `<outdir>/latest`
points to the newest."""

from __future__ import annotations

import os
import re


def next_run_id(outdir: str) -> int:
    """One more than the largest numeric prefix among `outdir`'s entries (0 for an empty or missing folder)."""
    ids = []
    if os.path.isdir(outdir):
        for name in os.listdir(outdir):
            match = re.match(r"^\d+", name)
            if match:
                ids.append(int(match.group()))
    return max(ids, default=-1) + 1


def create_run_dir(outdir: str, desc: str) -> str:
    """Create and return a fresh numbered run directory; refuses to reuse one (os.makedirs exist_ok=False)."""
    path = os.path.join(outdir, f"{next_run_id(outdir):05d}-{desc}")
    if os.path.exists(path):
        raise FileExistsError(f"run directory {path} already exists; refusing to overwrite a run")
    os.makedirs(path)
    return path


LATEST = "latest"  # <outdir>/latest: a symlink to the newest run folder, so that commands can name it in advance


def point_latest(outdir: str, run_dir: str) -> None:
    """Make `<outdir>/latest` point to `run_dir` (relative link, replaced atomically). A `latest` that is not a
    symlink is the user's and stays; where symlinks are not allowed (some Windows accounts) there is no link."""
    link = os.path.join(outdir, LATEST)
    if os.path.lexists(link) and not os.path.islink(link):
        return
    tmp = os.path.join(outdir, f".{LATEST}.{os.getpid()}.tmp")
    try:
        os.symlink(os.path.basename(os.path.normpath(run_dir)), tmp)
        os.replace(tmp, link)
    except OSError:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def next_steps(outdir: str, run_dir: str) -> str:
    """What a user needs after a run: where it is (also as <outdir>/latest), its newest snapshot, how to go on."""
    snapshots = sorted(name for name in os.listdir(run_dir) if name.startswith("network-snapshot-"))
    lines = [f"Run folder: {run_dir} (also {os.path.join(outdir, LATEST)} until the next run)"]
    if snapshots:
        lines.append(f"Newest snapshot: {os.path.join(run_dir, snapshots[-1])}")
    lines.append(f"Continue with: python train.py --outdir {outdir} --resume={run_dir} --kimg=<more>")
    return "\n".join(lines)
