"""Run directories: `<outdir>/<00000 next id>-<description>`, never reusing an existing one."""

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
