"""projector.py: NVIDIA's outputs for our snapshots (grayscale, conditional), generate.py --projected-w renders the
projection, and bad inputs get one Error: line and leave nothing behind."""

import os

import bad_inputs
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from test_generate import snapshot

import generate
import projector


def target_image(path, G, c) -> str:
    """An image the network drew (saved as 8-bit grey), padded to a non-square so that the crop matters."""
    with torch.no_grad():
        img = G(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)), c, noise_mode="const")
    pil = generate.to_pil(img[0])
    canvas = PIL.Image.new("L", (pil.width + 4, pil.height), 0)
    canvas.paste(pil, (2, 0))
    canvas.save(path)
    return str(path)


def test_projects_writes_official_outputs_and_generate_renders_them(tmp_path):
    pkl = str(tmp_path / "net.pkl")
    G = snapshot(pkl, c_dim=2)
    target = target_image(tmp_path / "xray.png", G, torch.tensor([[0.0, 1.0]]))
    out = tmp_path / "proj"
    result = CliRunner().invoke(
        projector.main,
        [
            "--network",
            pkl,
            "--target",
            target,
            "--num-steps",
            "50",
            "--save-video",
            "False",
            "--outdir",
            str(out),
            "--device",
            "cpu",
            "--distance",
            "pixel",
            "--class",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Distance: fallback distance: mean squared pixel difference" in result.output
    assert sorted(os.listdir(out)) == ["proj.png", "projected_w.npz", "target.png"]
    assert np.array_equal(
        np.asarray(PIL.Image.open(out / "target.png")), np.asarray(PIL.Image.open(target))[:, 2:-2]
    )  # the centre crop, same size: no resize
    with np.load(out / "projected_w.npz") as data:
        assert data["w"].shape == (1, G.num_ws, G.w_dim) and data["c"].tolist() == [1]
    # The test network's noise strengths are 0, so its own noise maps render the projection as projector.py did.
    rendered = tmp_path / "gen"
    result = CliRunner().invoke(
        generate.main,
        ["--network", pkl, "--projected-w", str(out / "projected_w.npz"), "--outdir", str(rendered), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert np.array_equal(
        np.asarray(PIL.Image.open(rendered / "proj00.png")), np.asarray(PIL.Image.open(out / "proj.png"))
    )


@pytest.mark.skipif(
    not all(map(__import__("importlib").util.find_spec, projector.VIDEO_PACKAGES)),
    reason="the video extra (imageio, imageio-ffmpeg) is not installed",
)
def test_video_has_one_frame_per_step(tmp_path):
    import imageio

    pkl = str(tmp_path / "net.pkl")
    G = snapshot(pkl, c_dim=0)
    target = target_image(tmp_path / "t.png", G, torch.zeros([1, 0]))
    result = CliRunner().invoke(
        projector.main,
        [
            "--network",
            pkl,
            "--target",
            target,
            "--num-steps",
            "5",
            "--outdir",
            str(tmp_path / "o"),
            "--distance",
            "pixel",
        ],
    )
    assert result.exit_code == 0, result.output
    with imageio.get_reader(str(tmp_path / "o" / "proj.mp4")) as reader:
        assert reader.count_frames() == 5


BAD_INPUTS = {
    "missing target": (["--target", "{tmp}/missing.png"], 1, "--target={tmp}/missing.png: cannot read the image"),
    "target not an image": (["--target", "{text}"], 1, "cannot read the image"),
    "class out of range": (["--class", "2"], 2, "--class=2 is out of range"),
    "zero steps": (["--num-steps", "0"], 2, "0 is not in the range x>=1"),
    "unknown distance": (["--distance", "ssim"], 2, "'ssim' is not one of"),
    "missing vgg16": (["--distance", "lpips", "--vgg16", "{tmp}/vgg16.pt"], 1, "no VGG16 (LPIPS) detector"),
    "outdir is a file": (["--outdir", "{text}"], 2, "exists and is not a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(tmp_path, case):
    pkl = str(tmp_path / "net.pkl")
    G = snapshot(pkl, c_dim=2)
    files = dict(tmp=tmp_path, text=bad_inputs.text_file(tmp_path / "notes.txt"))
    args = {
        "--network": pkl,
        "--target": target_image(tmp_path / "t.png", G, torch.tensor([[1.0, 0.0]])),
        "--num-steps": "2",
        "--save-video": "False",
        "--outdir": str(tmp_path / "out"),
        "--device": "cpu",
    }
    changes, exit_code, message = BAD_INPUTS[case]
    for flag, value in zip(changes[::2], changes[1::2]):
        args[flag] = value.format(**files)
    argv = [item for flag, value in args.items() for item in (flag, value)]
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(projector.main, argv)
    bad_inputs.assert_refused(result, message.format(**files), exit_code, tmp_path, before)


def test_video_without_its_packages_is_refused_before_any_output(tmp_path, monkeypatch):
    monkeypatch.setattr(projector, "VIDEO_PACKAGES", ("no_such_encoder_package",))
    pkl = str(tmp_path / "net.pkl")
    G = snapshot(pkl, c_dim=0)
    target = target_image(tmp_path / "t.png", G, torch.zeros([1, 0]))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(projector.main, ["--network", pkl, "--target", target, "--outdir", str(tmp_path / "o")])
    bad_inputs.assert_refused(
        result, "--save-video needs no_such_encoder_package (pip install imageio imageio-ffmpeg", 1, tmp_path, before
    )
