"""README.md as a newcomer meets it: every command block runs as written, top to bottom, on a fresh checkout, and
then once more in the same folder (a used runs/, data that is already there), as a user repeats a tutorial.

The blocks run in a temporary folder laid out like a fresh clone after `make test` (a `.venv/bin/python`, the
command-line scripts at the root), in README order: ```bash blocks with bash -e, ```python blocks with
`.venv/bin/python`. The one block of `make` commands is what creates `.venv`, so it is the starting point, not a
step. Only sizes change, through SMALL below: each entry replaces an exact README text (asserted to be there, so
the table cannot go stale) with a smaller one, so that the whole chain takes a couple of minutes on 2 cores.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "train.py",
    "generate.py",
    "calc_metrics.py",
    "legacy.py",
    "projector.py",
    "style_mixing.py",
    "dataset_tool.py",
)

# README text -> its small stand-in, and why the stand-in keeps the chain honest.
SMALL = {
    # 48 + 24 phantom radiographs instead of 2,000 + 500: every import, split and label path still runs.
    "--num-train 2000 --num-test 500": "--num-train 48 --num-test 24",
    # 4 iterations of 16 images instead of 30 kimg, then 4 more instead of 10 kimg: both runs, their checkpoints,
    # the continuation and the run-directory names (which carry --kimg) are the real thing at a smaller size.
    "--kimg=30": "--kimg=0.064",
    "--kimg=40": "--kimg=0.128",
    # ... and the snapshot of 128 images is named to the image (a fractional --kimg), not 000040.
    "network-snapshot-000040.pkl": "network-snapshot-000000.128.pkl",
    # 3 epochs instead of up to 30: a saved, loadable classifier is what the later blocks need.
    "--arch small_cnn": "--arch small_cnn --epochs 3",
    "--metrics=fid2k_spine,label_fidelity200": "--metrics=fid64_spine,label_fidelity32",
    "--per-class 500": "--per-class 8",
    # 5 projection steps instead of 300: every output is written, the fit is just rougher.
    "--num-steps=300": "--num-steps=5",
    # The paper's setting is hours on a GPU: checked as a dry run, which validates every option and file it names.
    ".venv/bin/python train.py --outdir runs --data data/spine256.zip": (
        ".venv/bin/python train.py --dry-run --outdir runs --data data/spine256.zip"
    ),
}


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every ```bash and ```python block, in order."""
    return re.findall(r"^```(bash|python)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def small(code: str) -> str:
    for big, little in SMALL.items():
        code = code.replace(big, little)
    return code


def fresh_checkout(root: Path) -> dict[str, str]:
    """A folder like a clone after `make test`; returns the environment to run its commands in."""
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # the interpreter running this test
    python.chmod(0o755)
    for name in SCRIPTS:
        (root / name).symlink_to(REPO / name)  # Python puts the script's real folder on sys.path
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", DNNLIB_CACHE_DIR=str(root / "cache"))
    env.pop("SPINEGAN_OPS_IMPL", None)
    return env


def run_blocks(blocks: list[tuple[str, str]], root: Path, env: dict[str, str]) -> list[str]:
    """Run the blocks in order in `root`; returns the output of each."""
    outputs = []
    for language, code in blocks:
        command = (
            ["bash", "-euo", "pipefail", "-c", small(code)]
            if language == "bash"
            else [".venv/bin/python", "-c", small(code)]
        )
        start = time.time()
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (
            f"README block failed:\n{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        outputs.append(done.stdout + done.stderr)
        print(f"{time.time() - start:6.1f} s  {code.splitlines()[0]}")  # shown with -s or on failure
    return outputs


def check_chain_outputs(root: Path, outputs: list[str], first_run: int) -> None:
    """What one pass of the chain made: a run of 0.064 kimg (number `first_run`), its continuation to 0.128 kimg
    (the next number, where runs/latest points), images, a classifier, a synthetic dataset."""
    continued = root / "runs" / f"{first_run + 1:05d}-spine32-cond-demo-kimg0.128-continued-clinical0.1"
    log = (continued / "log.txt").read_text()
    assert f"Continuing {root / 'runs'}/{first_run:05d}-spine32-cond-demo-kimg0.064-clinical0.1/checkpoint.pt" in log
    assert "changed:\n  --kimg: the run has 0.064, now 0.128\n" in log and "\r" not in log
    assert (continued / "network-snapshot-000000.128.pkl").is_file()
    assert os.path.realpath(root / "runs" / "latest") == str(continued)
    assert sorted(os.listdir(root / "out")) == [f"seed{seed:04d}.png" for seed in range(36)]
    assert (root / "classifier.pkl").is_file() and (root / "data" / "synthetic.zip").is_file()
    assert any("runs/latest/network-snapshot-000000.128.pkl (4, 1, 32, 32)" in out for out in outputs)
    assert sorted(os.listdir(root / "proj")) == ["proj.png", "proj00.png", "projected_w.npz", "target.png"]
    assert (root / "mix" / "grid.png").is_file()
    panel = json.loads((root / "runs" / "panel" / "panel.json").read_text())
    assert panel["members"] == ["small_cnn:dataset", "patch_cnn:blurred_image"] and list(panel["variants"]) == [
        "spinegan"
    ]


def test_the_readme_runs_top_to_bottom_twice(tmp_path):
    text = (REPO / "README.md").read_text()
    for big in SMALL:
        assert big in text, f"SMALL names README text that is no longer there: {big!r}"
    blocks = readme_blocks(text)
    assert blocks[0][1].startswith("make demo") and "make test" in blocks[0][1]
    env = fresh_checkout(tmp_path)
    check_chain_outputs(tmp_path, run_blocks(blocks[1:], tmp_path, env), first_run=0)
    synthetic = (tmp_path / "data" / "synthetic.zip").read_bytes()
    check_chain_outputs(tmp_path, run_blocks(blocks[1:], tmp_path, env), first_run=2)
    assert (tmp_path / "data" / "synthetic.zip").read_bytes() != synthetic  # from the new run's generator
    runs = sorted(name for name in os.listdir(tmp_path / "runs") if name[0].isdigit())
    assert runs == [
        f"{i:05d}-spine32-cond-demo-kimg0.{kimg}{'-continued' if i % 2 else ''}-clinical0.1"
        for i, kimg in enumerate(["064", "128"] * 2)
    ]  # the spine256 commands were dry runs
