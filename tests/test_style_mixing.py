"""style_mixing.py: mixing a latent with itself is the plain image; mixed styles come from the column; the grid's
layout; bad inputs get one Error: line."""

import os

import bad_inputs
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from test_generate import snapshot
from tolerances import rounding_tol

import generate
import style_mixing


def test_mixing_a_latent_with_itself_gives_the_plain_image(tmp_path):
    G = snapshot(str(tmp_path / "net.pkl"), c_dim=2)
    c = torch.tensor([[0.0, 1.0]])
    images = style_mixing.style_mixing_images(G, [3, 4], [3, 4], [0, 1, 2], 0.7, "const", c)
    with torch.no_grad():
        plain = G(
            torch.from_numpy(generate.seed_latents([3], G.z_dim)).float(), c, truncation_psi=0.7, noise_mode="const"
        )[0]
        w = style_mixing.seed_ws(G, [3, 4], c.expand(2, -1), 0.7)[0]
        self_mixed = G.synthesis(style_mixing.mix(w, w, [0, 1, 2])[None], noise_mode="const")[0]
    assert torch.equal(self_mixed, images[(3, 3)])  # the same operations on the same inputs: exact
    # The plain image maps one latent, not a batch of two: equal up to rounding.
    torch.testing.assert_close(images[(3, 3)], plain, atol=rounding_tol(torch.float32, 1000), rtol=0)


def test_mixed_styles_come_from_the_column_and_the_rest_from_the_row():
    row, col = torch.zeros(5, 2), torch.ones(5, 2)
    mixed = style_mixing.mix(row, col, [1, 3])
    assert mixed[:, 0].tolist() == [0, 1, 0, 1, 0] and row.sum() == 0  # the row's ws are not modified


def test_writes_pairs_and_grid(tmp_path):
    pkl = str(tmp_path / "net.pkl")
    snapshot(pkl, c_dim=2)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        style_mixing.main,
        [
            "--network",
            pkl,
            "--rows",
            "1,2",
            "--cols",
            "5",
            "--styles",
            "0-1",
            "--class",
            "0",
            "--outdir",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["1-1.png", "1-5.png", "2-2.png", "2-5.png", "5-5.png", "grid.png"]
    grid = np.asarray(PIL.Image.open(out / "grid.png"))
    assert grid.shape == (3 * 8, 2 * 8)  # grayscale: (rows + 1) x (cols + 1) cells of 8 px
    assert not grid[:8, :8].any()  # the empty corner
    assert np.array_equal(grid[:8, 8:], np.asarray(PIL.Image.open(out / "5-5.png")))
    assert np.array_equal(grid[16:, 8:], np.asarray(PIL.Image.open(out / "2-5.png")))
    assert np.array_equal(grid[16:, :8], np.asarray(PIL.Image.open(out / "2-2.png")))


BAD_INPUTS = {
    "style index beyond num_ws": (
        ["--styles", "0-40"],
        2,
        "style index 4 is out of range: the network has styles 0..3",
    ),
    "styles backwards": (["--styles", "3-1"], 2, "ends before it starts"),
    "no class": (["--class", None], 2, "pass --class=0..1"),
    "missing network": (["--network", "{tmp}/missing.pkl"], 1, "missing.pkl: cannot read the network snapshot"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(tmp_path, case):
    pkl = str(tmp_path / "net.pkl")
    snapshot(pkl, c_dim=2)
    args = {
        "--network": pkl,
        "--rows": "1",
        "--cols": "2",
        "--styles": "0-1",
        "--class": "1",
        "--outdir": str(tmp_path / "out"),
        "--device": "cpu",
    }
    changes, exit_code, message = BAD_INPUTS[case]
    args[changes[0]] = changes[1].format(tmp=tmp_path) if changes[1] is not None else None
    argv = [item for flag, value in args.items() if value is not None for item in (flag, value)]
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(style_mixing.main, argv)
    bad_inputs.assert_refused(result, message, exit_code, tmp_path, before)
