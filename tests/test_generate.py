"""generate.py: official seeds, grayscale PNGs, clear errors for bad classes and seeds."""

import os

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
    G = Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=8, img_channels=1,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=64, channel_max=8)).eval()
    D = Discriminator(c_dim=c_dim, img_resolution=8, img_channels=1, channel_base=64, channel_max=8)
    save_network_snapshot(path, G=G, D=D, G_ema=G)
    return G


def test_parse_range():
    assert generate.parse_range("0-3") == [0, 1, 2, 3]
    assert generate.parse_range("1,2,5") == [1, 2, 5]
    assert generate.parse_range("0-1,7") == [0, 1, 7]


def test_writes_requested_seeds_as_grayscale_official_latents(tmp_path):
    pkl = str(tmp_path / "net.pkl")
    G = snapshot(pkl, c_dim=2)
    out = str(tmp_path / "out")
    result = CliRunner().invoke(generate.main, ["--network", pkl, "--seeds", "3-5,9", "--class", "1",
                                                "--outdir", out, "--batch", "3", "--device", "cpu"])
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
    result = CliRunner().invoke(generate.main, ["--network", pkl, "--seeds", "0", "--outdir",
                                                str(tmp_path / "o"), "--device", "cpu", *args])
    assert result.exit_code != 0 and message in result.output
    assert not os.path.exists(tmp_path / "o" / "seed0000.png")


def test_refuses_bad_seeds(tmp_path):
    result = CliRunner().invoke(generate.main, ["--network", "x.pkl", "--seeds", "5-2", "--outdir", "o"])
    assert result.exit_code != 0 and "ends before it starts" in result.output
