"""train.py: presets, option checks with clear messages, run-directory naming, resume semantics."""

import json
import os

import bad_inputs
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dnnlib
import train
from torch_utils import custom_ops
from training import checkpoint as ckpt
from training.augment import augpipe_specs
from training.networks import Discriminator, Generator, precision_summary
from training.run_dir import create_run_dir, next_run_id
from training.serialization import save_network_snapshot
from training.training_loop import build_networks


def write_dataset(path: str, n: int = 8, res: int = 16, labels: bool = True) -> str:
    os.makedirs(path)
    rng = np.random.RandomState(0)
    for i in range(n):
        PIL.Image.fromarray(rng.randint(0, 255, [res, res]).astype(np.uint8), "L").save(f"{path}/img{i:02d}.png")
    with open(f"{path}/dataset.json", "w") as f:
        json.dump({"labels": [[f"img{i:02d}.png", i % 2] for i in range(n)] if labels else None}, f)
    return path


def invoke(*args: str):
    return CliRunner().invoke(train.main, list(args))


def test_spine_preset_numbers(tmp_path, captured):
    data = write_dataset(str(tmp_path / "spine256"), res=256, n=2)
    out = str(tmp_path / "runs")
    result = invoke("--outdir", out, "--data", data, "--cfg", "spine", "--cond", "1", "--metrics", "none")
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert args.batch_size == 16 and args.batch_gpu == 16
    assert args.loss_kwargs.r1_gamma == pytest.approx(0.8192) and args.ema_kimg == 5
    assert args.G_kwargs.mapping_kwargs.num_layers == 2 and args.ada_target == 0.6
    assert args.G_kwargs.synthesis_kwargs.channel_base == 16384
    assert args.augment_kwargs == augpipe_specs["bgcfnc"]
    assert os.path.basename(args.run_dir) == "00000-spine256-cond-spine"
    saved = json.load(open(os.path.join(args.run_dir, "training_options.json")))
    assert saved["loss_kwargs"]["r1_gamma"] == pytest.approx(0.8192)


def test_demo_gpu_preset_is_the_demo_at_batch_64(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"), res=32)
    for cfg in ("demo", "demo-gpu"):
        result = invoke("--outdir", str(tmp_path / cfg), "--data", data, "--cfg", cfg, "--cond", "1")
        assert result.exit_code == 0, result.output
    demo, gpu = captured
    assert (demo.batch_size, demo.batch_gpu, gpu.batch_size, gpu.batch_gpu) == (16, 16, 64, 64)
    assert gpu.kimg_per_tick == 4 and gpu.data_loader_kwargs.num_workers == 2
    different = {
        "batch_size",
        "batch_gpu",
        "kimg_per_tick",
        "data_loader_kwargs",
        "run_dir",
        "preset",
        "cli_options",
    }  # cli_options records the --cfg given
    assert {k: v for k, v in gpu.items() if k not in different} == {k: v for k, v in demo.items() if k not in different}


@pytest.mark.parametrize(
    "fp32, expected",
    [
        ("0", "bf16 blocks: G 8, 16, 32; D 32, 16, 8 (SPINEGAN_CPU_BF16=on)"),
        ("1", "Mixed precision: off (no blocks marked for it: --fp32 or num_fp16_res=0)"),
    ],
)
def test_fp32_option_turns_the_bf16_blocks_off(tmp_path, captured, cpu_bf16, fp32, expected):
    data = write_dataset(str(tmp_path / "ds"), res=32)
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--fp32", fp32)
    assert result.exit_code == 0, result.output
    args = captured[0]
    common = dict(c_dim=0, img_resolution=32, img_channels=1)
    G, D = Generator(**args.G_kwargs, **common), Discriminator(**args.D_kwargs, **common)
    assert precision_summary(dict(G=G, D=D), torch.device("cpu")) == expected


@pytest.mark.parametrize(
    "env, refused", [({}, True), ({"LOCAL_WORLD_SIZE": "2"}, True), ({"LOCAL_WORLD_SIZE": "1"}, False)]
)  # 1: one process per machine
def test_two_processes_on_one_gpu_are_refused(tmp_path, monkeypatch, env, refused):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--gpus", "2", "-n")
    if refused:
        assert result.exit_code == 1 and "NCCL needs one device per process" in result.output
        assert len(result.output.strip().splitlines()) == 1
    else:
        assert result.exit_code == 0, result.output
    assert not os.path.exists(tmp_path / "runs")


def test_auto_preset_matches_official_formulas(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"), res=64)
    result = invoke(
        "--outdir",
        str(tmp_path / "runs"),
        "--data",
        data,
        "--metrics",
        "none",
        "--gamma",
        "2",
        "--kimg",
        "10",
        "--mirror",
        "1",
        "--aug",
        "fixed",
        "--p",
        "0.3",
    )
    assert result.exit_code == 0, result.output
    args = captured[0]
    # mb = max(min(1 * min(4096 // 64, 32), 64), 1) = 32, ema = 10 kimg, mbstd = 4, fmaps 0.5.
    assert args.batch_size == 32 and args.ema_kimg == 10 and args.D_kwargs.epilogue_kwargs.mbstd_group_size == 4
    assert args.G_kwargs.synthesis_kwargs.channel_base == 16384 and args.augment_p == 0.3 and args.ada_target is None
    assert os.path.basename(args.run_dir) == "00000-ds-mirror-auto1gpu-gamma2-kimg10-fixed-p0.3"


def test_widths_override_the_presets_in_both_networks(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--metrics", "none",
                    "--cbase", "2048", "--cmax", "128", "--kimg", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    args = captured[0]
    for kwargs in (args.G_kwargs.synthesis_kwargs, args.D_kwargs):
        assert (kwargs.channel_base, kwargs.channel_max) == (2048, 128)  # demo: 1024 and 64
    assert os.path.basename(args.run_dir) == "00000-ds-demo-kimg1-cbase2048-cmax128"


def test_a_pose_warp_read_from_z_is_sized_by_the_latent(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--metrics", "none",
                    "--pose-res", "4", "--pose-source", "z", "--kimg", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    synthesis = captured[0].G_kwargs.synthesis_kwargs
    assert (synthesis.pose_res, synthesis.pose_z_dim) == (4, 128)  # the demo preset's z_dim
    assert os.path.basename(captured[0].run_dir) == "00000-ds-demo-kimg1-pose4z"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--aug", "fixed"], "--aug=fixed requires specifying --p"),
        (["--p", "0.2"], "--p can only be specified with --aug=fixed"),
        (["--aug", "noaug", "--augpipe", "bgc"], "--augpipe cannot be specified with --aug=noaug"),
        (["--aug", "noaug", "--target", "0.5"], "--target can only be specified with --aug=ada"),
        (["--gpus", "2", "--batch", "3"], "--batch must be at least 1 and divisible by --gpus"),
        (["--gpus", "3"], "--gpus must be a power of two"),
        (["--batch", "8", "--batch-gpu", "3"], "must be a multiple of --batch-gpu"),
        (["--augpipe", "xyz"], "--augpipe=xyz"),
        (["--resume", "missing.pkl"], "no such file"),
        (["--d-cond", "0"], "--d-cond=0 applies to a conditional run (--cond=1)"),
        (["--cbase", "0"], "--cbase must be at least 1, got 0"),
        (["--cmax", "-8"], "--cmax must be at least 1, got -8"),
        (["--pose-res", "6"], "--pose-res=6: expected 0 or a power of two from 4 to"),
        (["--pose-source", "z"], "--pose-source=z needs --pose-res"),
    ],
)
def test_bad_option_combinations_are_refused(tmp_path, captured, extra, message):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--metrics", "none", *extra)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not captured and not os.path.exists(tmp_path / "runs")


@pytest.mark.skipif(torch.cuda.is_available(), reason="refused only without a CUDA device")
def test_cuda_graphs_without_a_cuda_device_are_refused(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--metrics", "none", "--cuda-graphs", "1")
    assert result.exit_code == 1 and "--cuda-graphs=1 needs one process on a CUDA device" in result.output
    assert not captured and not os.path.exists(tmp_path / "runs")


def test_cond_without_labels_is_refused(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"), labels=False)
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cond", "1", "--metrics", "none")
    assert result.exit_code == 1 and "--cond=True requires labels" in result.output


def test_dry_run_creates_nothing(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "-n")
    assert result.exit_code == 0 and "Dry run" in result.output
    assert not captured and not os.path.exists(tmp_path / "runs")


def test_runs_get_new_numbered_directories(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    out = tmp_path / "runs"
    (out / "00007-old").mkdir(parents=True)
    for _ in range(2):
        assert invoke("--outdir", str(out), "--data", data, "--cfg", "demo").exit_code == 0
    assert [os.path.basename(a.run_dir) for a in captured] == ["00008-ds-demo", "00009-ds-demo"]
    assert next_run_id(str(out)) == 10


def test_existing_run_directory_is_never_reused(tmp_path, monkeypatch):
    (tmp_path / "00000-x").mkdir()
    monkeypatch.setattr("training.run_dir.next_run_id", lambda outdir: 0)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        create_run_dir(str(tmp_path), "x")


def fake_checkpoint(path, args) -> str:
    """A file that reads as a checkpoint of the run `args` describes (the option handling reads only its options)."""
    torch.save(dict(format=ckpt.FORMAT, options=ckpt.plain(train.run_options(args))), path)
    return str(path)


def demo_run_checkpoint(tmp_path, captured) -> tuple[str, str]:
    """(outdir, checkpoint path) of a started 0.1-kimg demo run, for the continuation tests."""
    data = write_dataset(str(tmp_path / "ds"))
    out = str(tmp_path / "runs")
    assert invoke("--outdir", out, "--data", data, "--cfg", "demo", "--kimg", "0.1").exit_code == 0
    return out, fake_checkpoint(tmp_path / "checkpoint.pt", captured[0])


def test_continued_run_takes_its_own_options(tmp_path, captured):
    """--resume=<checkpoint.pt> alone continues the run as it was started: data, preset, kimg, metrics."""
    data = write_dataset(str(tmp_path / "ds"))
    out = str(tmp_path / "runs")
    first = invoke(
        "--outdir",
        out,
        "--data",
        data,
        "--cond",
        "1",
        "--cfg",
        "demo",
        "--kimg",
        "0.1",
        "--gamma",
        "2",
        "--metrics",
        "none",
        "--snap",
        "7",
    )
    assert first.exit_code == 0, first.output
    path = fake_checkpoint(tmp_path / "checkpoint.pt", captured[0])
    cont = invoke("--outdir", out, "--resume", path)
    assert cont.exit_code == 0, cont.output
    args = captured[1]
    assert args.total_kimg == 0.1 and args.metrics == [] and args.network_snapshot_ticks == 7
    assert args.loss_kwargs.r1_gamma == 2 and args.batch_size == 16 and args.training_set_kwargs.use_labels
    assert args.notes == [f"Continuing {path} with the run's own options; none changed"]
    assert os.path.basename(args.run_dir) == "00001-ds-cond-demo-gamma2-kimg0.1-continued"


def test_continued_run_lists_the_options_it_changes(tmp_path, captured):
    out, path = demo_run_checkpoint(tmp_path, captured)
    cont = invoke("--outdir", out, "--resume", path, "--kimg", "0.5", "--snap", "3", "--cfg", "demo")
    assert cont.exit_code == 0, cont.output
    args = captured[1]
    assert args.total_kimg == 0.5 and args.network_snapshot_ticks == 3
    assert args.notes[1:] == ["  --kimg: the run has 0.1, now 0.5", "  --snap: the run has 50, now 3"]


def test_continued_run_refuses_other_changes_one_line_each(tmp_path, captured):
    out, path = demo_run_checkpoint(tmp_path, captured)
    refused = invoke("--outdir", out, "--resume", path, "--gamma", "3", "--mirror", "1", "--kimg", "1")
    assert refused.exit_code == 1 and len(captured) == 1
    lines = refused.output.splitlines()
    assert lines[0] == f"Error: --resume={path} continues a run whose options differ from those given now:"
    assert lines[1:3] == ["  --gamma: the run has None, now 3.0", "  --mirror: the run has False, now True"]
    assert lines[3].startswith("Leave them out to continue with the run's own options (only --kimg, --snap,")


def test_a_checkpoint_without_its_command_line_is_refused_in_one_line(tmp_path, captured):
    out, path = demo_run_checkpoint(tmp_path, captured)
    options = torch.load(path, weights_only=True)["options"]
    del options["cli_options"]  # as a pre-release version wrote them
    torch.save(dict(format=ckpt.FORMAT, options=options), path)
    refused = invoke("--outdir", out, "--resume", path)
    assert refused.exit_code == 1 and len(captured) == 1
    assert refused.output.splitlines() == [
        f"Error: --resume={path}: the checkpoint does not record the command line it was started with (written by a "
        "pre-release version); pass one of its network snapshots (.pkl) to --resume to start a new run from its weights"
    ]


def test_dry_run_prints_the_official_summary(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"), res=16, n=8)
    result = invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--cond", "1", "-n")
    assert result.exit_code == 0, result.output
    summary = result.output.split("Output directory:")[1].splitlines()
    assert summary[0].strip() == os.path.join(str(tmp_path / "runs"), "00000-ds-cond-demo")
    assert [line.split(":")[0] for line in summary[1:9]] == [
        "Training data",
        "Training duration",
        "Number of GPUs",
        "Batch size",
        "Number of images",
        "Image resolution",
        "Conditional model",
        "Dataset x-flips",
    ]
    assert summary[2].split()[-2:] == ["30", "kimg"] and summary[5].split()[-1] == "8"
    assert summary[6].split()[-1] == "16" and summary[7].split()[-1] == "True"


@pytest.mark.slow
def test_demo_run_then_exact_continuation(tmp_path, monkeypatch):
    """A real (short) CLI run, then --resume of its checkpoint: same options pass (the data given by a relative
    path this time), others are refused."""
    data = write_dataset(str(tmp_path / "ds"), n=16)
    out = str(tmp_path / "runs")
    common = ["--outdir", out, "--data", data, "--cfg", "demo", "--batch", "8", "--snap", "1000"]
    custom_ops.reset_state()  # so that this run logs the ops' choice of implementation afresh
    result = invoke(*common, "--kimg", "0.032", "--kimg-per-tick", "0.016")
    assert result.exit_code == 0, result.output
    run = os.path.join(out, "00000-ds-demo-kimg0.032-batch8")
    assert {"checkpoint.pt", "log.txt", "stats.jsonl", "fakes000000.032.png", "network-snapshot-000000.032.pkl"} <= set(
        os.listdir(run)
    )
    assert "bias_act: using CPU kernel (built for this CPU" in open(os.path.join(run, "log.txt")).read()
    ckpt_path = os.path.join(run, "checkpoint.pt")
    refused = invoke(*common, "--kimg", "0.048", "--gamma", "3", "--resume", ckpt_path)
    assert refused.exit_code == 1 and "  --gamma: the run has None, now 3.0" in refused.output
    monkeypatch.chdir(tmp_path)
    common[common.index(data)] = os.path.relpath(data)
    cont = invoke(*common, "--kimg", "0.048", "--resume", ckpt_path)
    assert cont.exit_code == 0, cont.output
    log = open(os.path.join(out, "00001-ds-demo-kimg0.048-batch8-continued", "log.txt")).read()
    assert "Resumed from checkpoint" in log and "at 0.032 kimg" in log
    assert "changed:\n  --kimg: the run has 0.032, now 0.048\n" in log  # the log says what differs from the run


def tiny_snapshot(path) -> str:
    G = Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )
    save_network_snapshot(path, G=G, D=None, G_ema=G)
    return str(path)


def test_resume_snapshot_of_the_same_networks_is_accepted(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    common = ["--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo", "--cond", "1"]
    assert invoke(*common).exit_code == 0
    args = captured[0]
    shape = dnnlib.EasyDict(label_dim=2, resolution=16, num_channels=1)
    nets = build_networks(shape, args.G_kwargs, args.D_kwargs, None, 0, None, {}, args.batch_size, torch.device("cpu"))
    save_network_snapshot(tmp_path / "same.pkl", G=nets.G, D=nets.D, G_ema=nets.G_ema)
    result = invoke(*common, "--resume", str(tmp_path / "same.pkl"))
    assert result.exit_code == 0, result.output
    assert captured[1].resume_pkl == str(tmp_path / "same.pkl")


# Bad inputs that need files -> (options, the distinctive part of the one error line); exit status 1, and neither
# a run directory nor any other file may appear.
BAD_FILES = {
    "mixed image sizes": (
        ["--data", "{mixed}"],
        "img03.png: 8x8 L image; every image must be 16x16 with 1 channel(s) like img00.png (1 of 4 images differ)",
    ),
    "resume from a text file": (["--resume", "{text}"], "--resume: {text}: not a network snapshot"),
    "resume from torch.save with a class": (["--resume", "{object}"], "names the Python global bad_inputs.Payload"),
    "resume from a pickle with code": (["--resume", "{code_pkl}"], "refusing to load global posix.system"),
    "resume from networks of another shape": (
        ["--resume", "{tiny}"],
        "--resume={tiny}: its G does not fit this run's networks",
    ),
    "metrics classifier missing": (["--metrics-classifier", "{tmp}/none.pkl"], "none.pkl: no such file"),
    "metrics classifier is a pickle": (
        ["--metrics-classifier", "{code_pkl}"],
        "--metrics-classifier: {code_pkl}: not a classifier.pkl",
    ),
    "metrics classifier with code": (["--metrics-classifier", "{code_zip}"], "names the Python global posix.system"),
    "metrics classifier of other classes": (
        ["--metrics-classifier", "{lesion}", "--metrics", "label_fidelity10"],
        "3 classes vs conditioning labels of dimension 2",
    ),
    "label fidelity of an unconditional run": (
        ["--metrics-classifier", "{abnormality}", "--cond", "0", "--metrics", "label_fidelity10"],
        "conditioning labels of dimension 0",
    ),
    "clinical classifier with code": (["--clinical-loss", "{code_zip}"], "names the Python global posix.system"),
    "clinical classifier of other classes": (["--clinical-loss", "{lesion}"], "classifier does not fit the dataset"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_before_the_run_directory_exists(tmp_path, captured, case):
    files = dict(
        tmp=tmp_path,
        mixed=bad_inputs.write_images(tmp_path / "mixed", [16, 16, 16, 8], [0, 1, 0, 1]),
        text=bad_inputs.text_file(tmp_path / "notes.txt"),
        object=bad_inputs.torch_zip_with_object(tmp_path / "object.pkl"),
        code_zip=bad_inputs.torch_zip_with_code(tmp_path / "code.pt"),
        code_pkl=bad_inputs.pickle_with_code(tmp_path / "code.pkl"),
        lesion=bad_inputs.classifier_file(tmp_path / "lesion.pkl", ("a", "b", "c")),
        abnormality=bad_inputs.classifier_file(tmp_path / "abnormality.pkl"),
        tiny=tiny_snapshot(tmp_path / "tiny.pkl"),
    )
    data = write_dataset(str(tmp_path / "ds"))
    changes, message = BAD_FILES[case]
    options = {"--outdir": str(tmp_path / "runs"), "--data": data, "--cond": "1", "--metrics": "none", "--kimg": "1"}
    options.update(dict(zip(changes[::2], [value.format(**files) for value in changes[1::2]])))
    before = bad_inputs.tree(tmp_path)
    result = invoke(*[item for pair in options.items() for item in pair])
    bad_inputs.assert_refused(result, message.format(**files), 1, tmp_path, before)
    assert not captured


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--seed", "-1", "-1 is not in the range 0<=x<=4294967295"),
        ("--seed", "4294967296", "4294967296 is not in the range 0<=x<=4294967295"),
        ("--outdir", "{notes}", "exists and is not a folder"),
    ],
)
def test_usage_errors(tmp_path, captured, option, value, message):
    data = write_dataset(str(tmp_path / "ds"))
    notes = bad_inputs.text_file(tmp_path / "notes.txt")
    before = bad_inputs.tree(tmp_path)
    options = {"--outdir": str(tmp_path / "runs"), "--data": data, option: value.format(notes=notes)}
    result = invoke(*[item for pair in options.items() for item in pair])
    bad_inputs.assert_refused(result, message, 2, tmp_path, before)


def test_stale_temp_files_of_killed_runs_are_removed_at_the_next_start(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    old = tmp_path / "runs" / "00000-killed"
    old.mkdir(parents=True)
    stale = [old / ".checkpoint.pt.a1b2c3d4.tmp", old / ".network-snapshot-000040.pkl.zz_9yx8w.tmp"]
    kept = [old / "network-snapshot-000020.pkl", old / "notes.tmp", old / ".checkpoint.pt.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x")
        os.utime(path, (0, 0))
    assert invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--cfg", "demo").exit_code == 0
    assert sorted(os.listdir(old)) == sorted(p.name for p in kept)


@pytest.mark.parametrize("cores, workers", [(2, 2), (16, 3)])
def test_dataloader_workers_fit_the_machine(tmp_path, captured, monkeypatch, cores, workers):
    """The official 3 workers, but never more than the cores (torch warns about 3 workers on 2 cores)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    data = write_dataset(str(tmp_path / "ds"))
    assert invoke("--outdir", str(tmp_path / "runs"), "--data", data, "--metrics", "none").exit_code == 0
    assert captured[0].data_loader_kwargs["num_workers"] == workers


def test_continued_run_sizes_its_workers_to_this_machine(tmp_path, captured, monkeypatch):
    """Workers left at their default follow the machine the run continues on, not the one it started on."""
    data = write_dataset(str(tmp_path / "ds"))
    out = str(tmp_path / "runs")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert invoke("--outdir", out, "--data", data, "--metrics", "none").exit_code == 0
    path = fake_checkpoint(tmp_path / "checkpoint.pt", captured[0])
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert invoke("--outdir", out, "--resume", path).exit_code == 0
    assert [a.data_loader_kwargs["num_workers"] for a in captured] == [3, 2]
