"""What `train.py --resume=...` names, found and checked before anything else (before --data, the networks or the
run folder), so that a wrong value is one line about the value itself.

    a run folder           its checkpoint.pt (runs/latest: the one it points to now)
    a folder of runs       the checkpoint.pt of its newest run (highest number), e.g. --resume=runs
    a checkpoint.pt        continued exactly
    a snapshot .pkl        transfer learning (it must load)
    a URL or official name downloaded into the dnnlib cache now; offline, refused before the run folder exists
"""

from __future__ import annotations

import os
import re

import dnnlib
from dnnlib import UserError
from training import checkpoint as ckpt


def resolve_resume(value: str | None, named_urls: dict[str, str]) -> str | None:
    """The --resume value to use: a folder becomes its checkpoint's path, anything else is returned as given once
    it is known to load (a download is fetched into the cache). Raises UserError naming --resume."""
    if value is None or value == "noresume":
        return value
    if value in named_urls or "://" in value:
        fetch(value, named_urls.get(value, value))
        return value
    if os.path.isdir(value):
        return newest_checkpoint(os.path.realpath(value))  # runs/latest moves once this run starts
    if not os.path.isfile(value):
        raise UserError(
            f"--resume={value}: no such file (expected a checkpoint.pt, a run folder, a folder of runs, "
            f"a network snapshot .pkl, a URL, or one of {sorted(named_urls)})"
        )
    if os.path.realpath(value) != os.path.abspath(value):
        value = os.path.realpath(value)  # through runs/latest, which moves once this run starts
    if not ckpt.is_checkpoint(value):
        from training.serialization import load_network_pkl

        try:
            load_network_pkl(value)
        except UserError as exc:
            raise UserError(f"--resume: {exc} (expected a checkpoint.pt or a network snapshot .pkl)") from None
    return value


def fetch(value: str, url: str) -> str:
    """Download `url` into the dnnlib cache (or find it there); returns the local file."""
    try:
        return dnnlib.util.open_url(url, return_filename=True)
    except (OSError, ValueError) as exc:
        raise UserError(f"--resume={value}: {exc}") from None


def newest_checkpoint(folder: str) -> str:
    """`folder`/checkpoint.pt, else the checkpoint.pt of the highest-numbered run folder in `folder` that has one."""
    own = os.path.join(folder, ckpt.FILE_NAME)
    if os.path.isfile(own):
        return own
    runs = []
    for name in os.listdir(folder):
        match = re.match(r"^(\d+)-", name)
        path = os.path.join(folder, name, ckpt.FILE_NAME)
        if match and os.path.isfile(path):
            runs.append((int(match.group(1)), path))
    if not runs:
        raise UserError(
            f"--resume={folder}: a folder with no {ckpt.FILE_NAME}, and no run folder in it has one "
            f"(expected a run folder, a folder of runs, or a file)"
        )
    path = max(runs)[1]
    print(f"--resume={folder}: continuing its newest run, {path}")
    return path


def check_progress_left(path: str, total_kimg: float) -> None:
    """Refuse to continue a checkpoint that has already trained `total_kimg` (there would be nothing to do)."""
    done_kimg = ckpt.checkpoint_progress(path).get("cur_nimg", 0) / 1000
    if total_kimg <= done_kimg:
        raise UserError(
            f"--kimg={total_kimg:g}: the checkpoint {path} is already at {done_kimg:g} kimg; give a "
            f"larger --kimg to continue it"
        )
