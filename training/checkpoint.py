"""Full training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint (`checkpoint.pt` in the run directory, rewritten atomically at every network snapshot) holds
G, D, G_ema and the augment pipe (init_kwargs + state_dict), both optimisers, the path-length mean, the
progress counters (cur_nimg, cur_tick, batch_idx, tick_start_nimg; batch_idx fixes the sampler position) and, per
process, the RNG states (torch CPU/CUDA, numpy, python) and the ADA controller state. It contains only plain data and
tensors, so it is read with
`torch.load(weights_only=True)`: loading a checkpoint never executes code.

Contrast with a network snapshot (`training.serialization`): a snapshot carries the networks only and is used
for inference or transfer learning (`--resume=<snapshot.pkl>` initialises weights, counters start at 0).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
from typing import Any

import numpy as np
import torch

import dnnlib
from training.serialization import CHECKPOINT_FORMAT, load_weights_only

FORMAT = CHECKPOINT_FORMAT
FILE_NAME = "checkpoint.pt"


def plain(obj: Any) -> Any:
    """JSON-normalised copy (EasyDict -> dict, tuple -> list) so kwargs compare and load without pickled classes."""
    return json.loads(json.dumps(obj))


def capture_rng_state() -> dict:
    """This process's global RNG states (torch CPU and CUDA, numpy, python) as plain data."""
    np_state = np.random.get_state()
    return dict(
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        numpy=dict(
            keys=torch.from_numpy(np_state[1].astype(np.int64)),
            pos=int(np_state[2]),
            has_gauss=int(np_state[3]),
            cached_gaussian=float(np_state[4]),
        ),
        python=random.getstate(),
    )


def restore_rng_state(state: dict) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class preserved_rng_state:
    """Context manager: code inside may draw random numbers without changing the training's RNG streams.

    Image grids and metrics run inside it, so a run that skips them (e.g. after a resume) stays bit-identical.
    """

    def __enter__(self) -> None:
        self._state = capture_rng_state()

    def __exit__(self, *exc: object) -> None:
        restore_rng_state(self._state)


def net_entry(module: torch.nn.Module | None) -> dict | None:
    if module is None:
        return None
    return dict(
        init_kwargs=plain(getattr(module, "init_kwargs", {})),
        state_dict={k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
    )


def save_checkpoint(
    path: str | os.PathLike,
    *,
    nets: dict[str, torch.nn.Module | None],
    optimizers: dict[str, torch.optim.Optimizer],
    pl_mean: float,
    progress: dict,
    process_states: list[dict],
    training_set_kwargs: dict,
    options: dict,
    plugin_states: dict | None = None,
) -> None:
    """Write a checkpoint atomically (a run killed at any moment leaves the previous complete one).

    `process_states[rank]` = dict(rng=capture_rng_state(), ada=AdaController.state_dict() or None) of each
    process: both hold per-process streams (random numbers, ADA signs not yet reduced). `plugin_states` holds the
    plain-data state of stateful plug-ins (e.g. DP's privacy account under 'discriminator_update').
    """
    data = dict(
        format=FORMAT,
        nets={name: net_entry(module) for name, module in nets.items()},
        optimizers={name: opt.state_dict() for name, opt in optimizers.items()},
        pl_mean=float(pl_mean),
        progress=dict(progress),
        processes=process_states,
        training_set_kwargs=plain(training_set_kwargs),
        options=plain(options),
        plugins=dict(plugin_states or {}),
    )
    with dnnlib.atomic_write(path, "wb") as f:
        torch.save(data, f)


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True if `path` is a file written by `save_checkpoint` (False for snapshots and other files)."""
    return checkpoint_options(path) is not None


def checkpoint_options(path: str | os.PathLike) -> dict | None:
    """The options stored in a checkpoint, or None when `path` is not one. train.py asks several times while it
    checks a resume; the file is read once per version (path, size, modification time)."""
    summary = _read_summary(path)
    return None if summary is None else copy.deepcopy(summary["options"])


def checkpoint_progress(path: str | os.PathLike) -> dict:
    """The progress counters (cur_nimg, cur_tick, batch_idx, ...) stored in a checkpoint."""
    summary = _read_summary(path)
    if summary is None:
        raise dnnlib.UserError(f"{path}: not a SpineGAN checkpoint (expected format {FORMAT!r})")
    return dict(summary["progress"])


def _read_summary(path: str | os.PathLike) -> dict | None:
    st = os.stat(path)
    return _read_summary_version(os.path.abspath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_summary_version(path: str, size: int, mtime_ns: int) -> dict | None:
    try:
        data = load_weights_only(path, path, "a SpineGAN checkpoint")
    except dnnlib.UserError:  # any unreadable or foreign file: not ours
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return dict(options=data["options"], progress=data.get("progress", {}))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (tensors on the CPU); raises dnnlib.UserError naming the file if it is not one."""
    data = load_weights_only(path, os.fspath(path), "a SpineGAN checkpoint")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise dnnlib.UserError(f"{path}: not a SpineGAN checkpoint (expected format {FORMAT!r})")
    return data


def load_net_state(module: torch.nn.Module, entry: dict, name: str, path: str | os.PathLike) -> None:
    """Copy a checkpoint entry into `module`, refusing a network built with other constructor arguments."""
    ours = plain(getattr(module, "init_kwargs", {}))
    if ours != entry["init_kwargs"]:
        raise ValueError(
            f"{path}: {name} was built with {entry['init_kwargs']}, this run builds {ours}; "
            f"continue with the same options, or use a network snapshot (.pkl) for transfer learning"
        )
    module.load_state_dict(entry["state_dict"], strict=True)
