"""training.interrupt: Ctrl-C and SIGTERM stop training with a checkpoint that continues the run bit for bit, and
train.py says how to continue and exits 128 + the signal (issue 32)."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from test_train import write_dataset as write_cli_dataset
from test_training_loop import final_state, loop_kwargs, write_dataset

import train
from training import interrupt
from training.loop_plugins import LoopPlugins
from training.plugins import Plugin
from training.training_loop import training_loop


def test_the_first_signal_asks_the_second_stops_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupt.stop_on_signals():
        assert interrupt.stop_requested(after_tick=True, world=1) is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert interrupt.stop_requested(after_tick=False, world=1) == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert interrupt.stop_requested(after_tick=True, world=1) is None
    assert interrupt.Interrupted(signal.SIGINT, 0).exit_code == 130
    assert interrupt.Interrupted(signal.SIGTERM, 0).exit_code == 143


class SignalAt(Plugin):
    """A zero generator term that sends `signum` to this process on its `at`-th call (never when None): a user's
    Ctrl-C in the middle of the work."""

    name = "signal"

    def __init__(self, at: int | None, signum: int = signal.SIGINT):
        self.at, self.signum, self.calls = at, signum, 0

    def __call__(self, gen_img, gen_c):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.signum)
        return gen_img.mean(dim=[1, 2, 3]) * 0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    return write_dataset(str(tmp_path_factory.mktemp("data") / "ds"))


def test_a_signal_mid_tick_checkpoints_and_the_resumed_run_is_the_uninterrupted_one(dataset, tmp_path):
    # 6 iterations of 4 images in 2 rounds (so 2 generator-term calls each), ticks after 4, 12 and 20 images.
    options = dict(kimg_per_tick=0.008, network_snapshot_ticks=2)
    full = str(tmp_path / "full")
    training_loop(**loop_kwargs(dataset, full, plugins=LoopPlugins(generator_terms=(SignalAt(None),)), **options))
    part = str(tmp_path / "part")
    with interrupt.stop_on_signals(), pytest.raises(interrupt.Interrupted) as stop:
        training_loop(
            **loop_kwargs(dataset, part, plugins=LoopPlugins(generator_terms=(SignalAt(4, signal.SIGTERM),)), **options)
        )
    assert stop.value.signum == signal.SIGTERM and stop.value.cur_nimg == 8  # after iteration 2, mid-tick
    assert final_state(part)["progress"] == dict(cur_nimg=8, cur_tick=1, batch_idx=2, tick_start_nimg=4)
    resumed = str(tmp_path / "resumed")
    training_loop(
        **loop_kwargs(
            dataset,
            resumed,
            plugins=LoopPlugins(generator_terms=(SignalAt(None),)),
            resume_checkpoint=os.path.join(part, "checkpoint.pt"),
            **options,
        )
    )
    a, b = final_state(full), final_state(resumed)
    assert a["progress"] == b["progress"]
    for net in ("G", "D", "G_ema", "augment_pipe"):
        for key, value in a["nets"][net]["state_dict"].items():
            assert torch.equal(value, b["nets"][net]["state_dict"][key]), f"{net}.{key}"


def test_train_logs_how_to_continue_and_exits_like_a_shell(tmp_path, monkeypatch):
    def stopped(**kwargs):
        print("Training for 1 kimg...")
        raise interrupt.Interrupted(signal.SIGINT, 640)

    monkeypatch.setattr("training.training_loop.training_loop", stopped)
    data = write_cli_dataset(str(tmp_path / "ds"))
    runs = str(tmp_path / "runs")
    result = CliRunner().invoke(train.main, ["--outdir", runs, "--data", data, "--cfg", "demo", "--kimg", "1"])
    assert result.exit_code == 130, result.output
    run = os.path.join(runs, "00000-ds-demo-kimg1")
    hint = f"interrupted at 0.64 kimg; continue with: python train.py --outdir {runs} --resume={run}/checkpoint.pt"
    assert open(os.path.join(run, "log.txt")).read().rstrip().endswith(hint)
    assert train  # the script under test


def interrupt_training(tmp_path, kimg_per_tick: str, *extra: str, group: bool = False) -> str:
    """Start train.py (demo preset, 50 kimg) in its own process, send SIGINT once the first tick is logged (to the
    whole process group when `group`, as a terminal does), and return its output; asserts the exit status 130."""
    data = write_cli_dataset(str(tmp_path / "ds"), n=16)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, os.path.join(repo, "train.py"), "--outdir", "runs", "--data", data, "--cfg", "demo"]
    process = subprocess.Popen(
        [*command, "--kimg", "50", "--kimg-per-tick", kimg_per_tick, *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        start_new_session=group,
    )
    for line in process.stdout:
        if line.startswith("tick 1 "):
            if group:
                os.killpg(process.pid, signal.SIGINT)
            else:
                process.send_signal(signal.SIGINT)
            break
    output = line + process.stdout.read()
    assert process.wait(timeout=120) == 130, output
    return output


@pytest.mark.slow
def test_ctrl_c_of_a_real_training_process(tmp_path):
    """train.py in its own process, sent SIGINT once training has started: exit status 130, a checkpoint, and the
    log's last line says how to continue."""
    interrupt_training(tmp_path, "0.016")
    run = tmp_path / "runs" / "00000-ds-demo-kimg50"
    last = (run / "log.txt").read_text().rstrip().splitlines()[-1]
    assert last.startswith("interrupted at ") and last.endswith(
        "kimg; continue with: python train.py --outdir runs --resume=runs/00000-ds-demo-kimg50/checkpoint.pt"
    )
    assert (run / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_ctrl_c_of_two_training_processes(tmp_path):
    """--gpus=2 on the CPU (gloo), Ctrl-C to the whole process group as a terminal sends it: both ranks agree on the
    stop at a tick, the checkpoint is written, the parent waits for them and exits 130."""
    interrupt_training(tmp_path, "0.032", "--gpus", "2", "--workers", "0", group=True)
    run = tmp_path / "runs" / "00000-ds-demo-kimg50"
    assert (run / "log.txt").read_text().rstrip().splitlines()[-1].startswith("interrupted at ")
    from training import checkpoint as ckpt

    progress = ckpt.checkpoint_progress(run / "checkpoint.pt")
    assert progress["cur_nimg"] == progress["tick_start_nimg"] > 0  # right after a tick, where the ranks agree
