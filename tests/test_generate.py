"""generate.py: official seeds, grayscale PNGs, clear errors for bad classes and seeds."""

import os

import bad_inputs
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import generate
from training.networks import Discriminator, Generator
from training.serialization import save_network_snapshot


def snapshot(path: str, c_dim: int) -> Generator:
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    ).eval()
    D = Discriminator(c_dim=c_dim, img_resolution=8, img_channels=1, channel_base=64, channel_max=8)
    save_network_snapshot(path, G=G, D=D, G_ema=G)
    return G


def test_writes_requested_seeds_as_grayscale_official_latents(tmp_path):
    pkl = str(tmp_path / "net.pkl")
    G = snapshot(pkl, c_dim=2)
    out = str(tmp_path / "out")
    result = CliRunner().invoke(
        generate.main,
        ["--network", pkl, "--seeds", "3-5,9", "--class", "1", "--outdir", out, "--batch", "3", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["seed0003.png", "seed0004.png", "seed0005.png", "seed0009.png"]
    img = PIL.Image.open(os.path.join(out, "seed0004.png"))
    assert img.mode == "L" and img.size == (8, 8)
    z = torch.from_numpy(np.random.RandomState(4).randn(1, 8)).float()
    with torch.no_grad():
        ref = G(z, torch.tensor([[0.0, 1.0]]), noise_mode="const")[0, 0]
    ref = (ref * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    assert np.array_equal(np.asarray(img), ref)


@pytest.mark.parametrize("args, message", [([], "pass --class=0..1"), (["--class", "2"], "out of range")])
def test_refuses_missing_or_out_of_range_class(tmp_path, args, message):
    pkl = str(tmp_path / "net.pkl")
    snapshot(pkl, c_dim=2)
    result = CliRunner().invoke(
        generate.main, ["--network", pkl, "--seeds", "0", "--outdir", str(tmp_path / "o"), "--device", "cpu", *args]
    )
    assert result.exit_code != 0 and message in result.output
    assert not os.path.exists(tmp_path / "o" / "seed0000.png")


def test_refuses_bad_seeds(tmp_path):  # also in BAD_INPUTS, with a real network
    result = CliRunner().invoke(generate.main, ["--network", "x.pkl", "--seeds", "5-2", "--outdir", "o"])
    assert result.exit_code != 0 and "ends before it starts" in result.output


# Each bad input -> (exit status, the distinctive part of its one error line); nothing may be written.
BAD_INPUTS = {
    "missing network": (
        ["--network", "{tmp}/missing.pkl"],
        1,
        "missing.pkl: cannot read the network snapshot (no such file)",
    ),
    "text file": (["--network", "{text}"], 1, "not a network snapshot"),
    "torch.save with a foreign class": (["--network", "{object}"], 1, "names the Python global bad_inputs.Payload"),
    "torch.save with code": (["--network", "{code_zip}"], 1, "names the Python global posix.system"),
    "pickle with code": (["--network", "{code_pkl}"], 1, "refusing to load global posix.system"),
    "seed above 2**32-1": (["--seeds", "4294967296"], 2, "seed 4294967296 is out of range: seeds are 0..4294967295"),
    "seed range above 2**32-1": (["--seeds", "1-99999999999"], 2, "seed 99999999999 is out of range"),
    "range backwards": (["--seeds", "5-2"], 2, "ends before it starts"),
    "not a seed": (["--seeds", "a"], 2, "'a' is not a seed"),
    "class out of range": (["--class", "2"], 2, "--class=2 is out of range: the network has classes 0..1"),
    "no class": (["--class", None], 2, "pass --class=0..1"),
    "outdir is a file": (["--outdir", "{text}"], 2, "exists and is not a folder"),
    "misspelt device": (["--device", "gpu"], 2, "'gpu' is not a device; expected cpu, cuda or cuda:N"),
    "projected w not an npz": (["--projected-w", "{text}"], 1, "--projected-w="),
    "projected w of another network": (
        ["--projected-w", "{wrong_w}"],
        1,
        "w of shape [1, 3, 8]; the network takes [N, 4, 8]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(tmp_path, case):
    pkl = str(tmp_path / "net.pkl")
    snapshot(pkl, c_dim=2)
    files = dict(
        tmp=tmp_path,
        text=bad_inputs.text_file(tmp_path / "notes.txt"),
        object=bad_inputs.torch_zip_with_object(tmp_path / "object.pkl"),
        code_zip=bad_inputs.torch_zip_with_code(tmp_path / "code.pt"),
        code_pkl=bad_inputs.pickle_with_code(tmp_path / "code.pkl"),
        wrong_w=tmp_path / "w.npz",
    )
    np.savez(files["wrong_w"], w=np.zeros([1, 3, 8], np.float32))
    args = {"--network": pkl, "--seeds": "0-1", "--class": "1", "--outdir": str(tmp_path / "out"), "--device": "cpu"}
    changes, exit_code, message = BAD_INPUTS[case]
    args.update({changes[0]: changes[1].format(**files) if changes[1] is not None else None})
    argv = [item for flag, value in args.items() if value is not None for item in (flag, value)]
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(generate.main, argv)
    bad_inputs.assert_refused(result, message, exit_code, tmp_path, before)


def test_stale_temp_files_of_a_killed_run_are_removed_and_others_kept(tmp_path):
    pkl = str(tmp_path / "net.pkl")
    snapshot(pkl, c_dim=0)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".seed0000.png.k3j_x9az.tmp"  # the name atomic_write gives (mkstemp's 8 random characters)
    foreign = [out / name for name in ("notes.tmp", ".seed0000.png.tmp", ".seed0000.png.ABCDEFGH.tmp")]
    for path in [stale, *foreign]:
        path.write_bytes(b"partial")
        os.utime(path, (0, 0))  # long untouched
    result = CliRunner().invoke(
        generate.main, ["--network", pkl, "--seeds", "0", "--outdir", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == sorted(["seed0000.png"] + [p.name for p in foreign])
