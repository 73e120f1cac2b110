"""Bad inputs shared by the command-line tests, and the check that a tool refused one properly.

Properly means (issue 17): exit status 1 (2 for a usage error), exactly one 'Error: ...' line that says what was
wrong, no traceback, no advice to load a file unsafely, and not one new file or folder anywhere under the test's
folder (outputs, run directories, temp files).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from click.testing import Result


class Payload:
    """A class of our own: any file that names it holds code, which a safe loader must refuse."""


class RunsCode:
    """Unpickles as os.system(touch <marker>): the file runs a command if it is ever unpickled unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def torch_zip_with_object(path: Path) -> Path:
    """A torch.save zip holding an instance of a foreign class (bad_inputs.Payload)."""
    torch.save(dict(format="spinegan-snapshot-v1", nets={}, payload=Payload()), path)
    return path


def torch_zip_with_code(path: Path) -> Path:
    """A torch.save zip that would run a shell command when unpickled without weights_only."""
    torch.save(dict(weights=torch.zeros(2), payload=RunsCode(path.parent / "owned")), path)
    return path


def pickle_with_code(path: Path) -> Path:
    """A raw pickle (what official network pickles are) that would run a shell command when unpickled."""
    path.write_bytes(pickle.dumps(dict(G_ema=RunsCode(path.parent / "owned")), protocol=4))
    return path


def text_file(path: Path) -> Path:
    path.write_text("not a model\n")
    return path


def write_images(root: Path, sizes: list[int], labels: list[int] | None = None) -> Path:
    """A folder dataset of 8-bit gray PNGs, image i of size sizes[i] (mixed sizes make a bad dataset)."""
    root.mkdir(parents=True)
    rng = np.random.RandomState(0)
    names = [f"img{i:02d}.png" for i in range(len(sizes))]
    for name, size in zip(names, sizes):
        PIL.Image.fromarray(rng.randint(0, 256, (size, size)).astype(np.uint8), "L").save(root / name)
    (root / "dataset.json").write_text(
        json.dumps(dict(labels=[[n, k] for n, k in zip(names, labels)] if labels is not None else None))
    )
    return root


def unwritable_path(root: Path, name: str = "out") -> Path:
    """A path no user can write, root included: inside a regular file. (Tests run as root here, and root ignores
    permission bits, so a chmod 0500 folder would not do.)"""
    blocker = root / "a_file"
    blocker.write_text("")
    return blocker / name


def tree(root: Path) -> set[str]:
    """Every file and folder under `root`, relative to it."""
    return {os.path.relpath(os.path.join(d, name), root) for d, dirs, files in os.walk(root) for name in dirs + files}


def assert_refused(
    result: Result, message: str, exit_code: int = 1, root: Path | None = None, before: set[str] | None = None
) -> None:
    """The tool stopped with one clear line containing `message` and, if `root` is given, left `root` as
    `before` (its tree when the command started)."""
    output = result.output
    assert result.exit_code == exit_code, output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}\n{output}"
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], output
    assert "Traceback" not in output and "weights_only" not in output, output
    if root is not None:  # also shows a command run by a malicious file: its marker 'owned' would be new
        assert tree(root) == before, sorted(tree(root) ^ before)


def classifier_file(
    path: Path, class_names: tuple[str, ...] = ("normal", "abnormal"), resolution: int = 16, seed: int = 0
) -> Path:
    """A small valid classifier.pkl (untrained, weights drawn with `seed`): 'abnormality' for 2 classes, else
    'lesion'."""
    from spine.classifier.artifact import ClassifierSpec, save_classifier
    from spine.classifier.models import build_network

    mode = "abnormality" if len(class_names) == 2 else "lesion"
    spec = ClassifierSpec(
        arch="small_cnn",
        arch_kwargs=dict(width=4, num_blocks=2),
        label_mode=mode,
        class_names=tuple(class_names),
        resolution=resolution,
        channels=1,
        intensity=dict(scale=1 / 255, mean=[0.4], std=[0.2]),
        thresholds=(0.5,) if mode == "abnormality" else (0.5,) * len(class_names),
    )
    torch.manual_seed(seed)
    net = build_network(spec.arch, spec.channels, spec.num_outputs, spec.arch_kwargs)
    save_classifier(path, net, spec, dict(note="test"))
    return path
