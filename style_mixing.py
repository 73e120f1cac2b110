"""Style mixing: a grid whose rows take their styles from the --rows seeds and, at the --styles layers, from the
--cols seeds (NVIDIA's style_mixing.py; our snapshots, checkpoints and official pickles; grayscale and
conditional networks).

Writes {row}-{col}.png for every pair (and {seed}-{seed}.png for every seed alone) and grid.png: the column seeds'
images along the top, the row seeds' down the left, their mixes inside. Seeds give NVIDIA's latents
(np.random.RandomState(seed).randn(1, z_dim)); truncation is w_avg + (w - w_avg) * psi.

\b
Example:
  python style_mixing.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --rows=85,100,75 --cols=55,821,1789 --styles=0-3 --class=1 --outdir=out
"""

from __future__ import annotations

import os

import click
import PIL.Image
import torch

import dnnlib
from dnnlib.cli import parse_range
from torch_utils import misc
from training.generation import class_labels, save_png, seed_latents, to_pil
from training.networks import NOISE_MODES


@torch.no_grad()
def seed_ws(G: torch.nn.Module, seeds: list[int], c: torch.Tensor, truncation_psi: float) -> torch.Tensor:
    """ws [len(seeds), num_ws, w_dim] of the official per-seed latents, truncated towards w_avg."""
    z = torch.from_numpy(seed_latents(seeds, G.z_dim)).to(c.device, torch.float32)
    return G.mapping(z, c, truncation_psi=truncation_psi)


def mix(row_w: torch.Tensor, col_w: torch.Tensor, styles: list[int]) -> torch.Tensor:
    """The row's ws with those at `styles` taken from the column's ([num_ws, w_dim] each)."""
    mixed = row_w.clone()
    mixed[styles] = col_w[styles]
    return mixed


@torch.no_grad()
def style_mixing_images(
    G: torch.nn.Module,
    row_seeds: list[int],
    col_seeds: list[int],
    styles: list[int],
    truncation_psi: float,
    noise_mode: str,
    c: torch.Tensor,
) -> dict[tuple[int, int], torch.Tensor]:
    """{(row seed, col seed): image [C, H, W] in [-1, 1]} for every pair and every seed with itself."""
    seeds = list(dict.fromkeys(row_seeds + col_seeds))
    ws = dict(zip(seeds, seed_ws(G, seeds, c[:1].expand(len(seeds), -1), truncation_psi)))
    pairs = [(s, s) for s in seeds] + [(r, k) for r in row_seeds for k in col_seeds if r != k]
    images = {}
    for row, col in pairs:
        w = ws[row] if row == col else mix(ws[row], ws[col], styles)
        images[(row, col)] = G.synthesis(w[None], noise_mode=noise_mode)[0]
    return images


def grid_image(
    images: dict[tuple[int, int], torch.Tensor], row_seeds: list[int], col_seeds: list[int]
) -> PIL.Image.Image:
    """Column seeds along the top, row seeds down the left, mixes inside; the top-left cell black."""
    first = to_pil(next(iter(images.values())))
    W, H = first.size
    canvas = PIL.Image.new(first.mode, (W * (len(col_seeds) + 1), H * (len(row_seeds) + 1)), 0)
    for i, row in enumerate([0] + row_seeds):
        for j, col in enumerate([0] + col_seeds):
            if i == 0 and j == 0:
                continue
            key = (col, col) if i == 0 else (row, row) if j == 0 else (row, col)
            canvas.paste(to_pil(images[key]), (W * j, H * i))
    return canvas


def parse_styles(text: str) -> list[int]:
    try:
        return parse_range(text)
    except click.BadParameter as exc:
        message = str(exc.message).replace("seeds are", "indices are").replace("seed", "style index")
        raise click.BadParameter(message, param_hint="--styles") from None


@click.command(help=__doc__)
@click.option("--network", "network_pkl", help="Network pickle filename or URL", required=True)
@click.option("--rows", "row_seeds", type=parse_range, help="Random seeds to use for image rows", required=True)
@click.option("--cols", "col_seeds", type=parse_range, help="Random seeds to use for image columns", required=True)
@click.option("--styles", "col_styles", type=parse_styles, help="Style layer range", default="0-6", show_default=True)
@click.option("--trunc", "truncation_psi", type=float, help="Truncation psi", default=1, show_default=True)
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True)
@click.option("--outdir", type=str, required=True, metavar="DIR")
@click.option("--class", "class_idx", type=int, help="Class label (required for conditional networks)")
@click.option("--device", type=misc.DEVICE, default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available]")
def main(
    network_pkl: str,
    row_seeds: list[int],
    col_seeds: list[int],
    col_styles: list[int],
    truncation_psi: float,
    noise_mode: str,
    outdir: str,
    class_idx: int | None,
    device: str | None,
) -> None:
    from training.serialization import load_generator

    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.BadParameter(f"{outdir} exists and is not a folder", param_hint="--outdir")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f'Loading networks from "{network_pkl}" on {dev}...')
    G = load_generator(network_pkl, dev).eval().requires_grad_(False)
    bad = [s for s in col_styles if s >= G.num_ws]
    if bad:
        raise click.BadParameter(
            f"style index {bad[0]} is out of range: the network has styles 0..{G.num_ws - 1}", param_hint="--styles"
        )
    c = class_labels(G, class_idx, 1, dev)
    images = style_mixing_images(G, row_seeds, col_seeds, col_styles, truncation_psi, noise_mode, c)
    os.makedirs(outdir, exist_ok=True)
    dnnlib.remove_stale_temp_files(outdir)  # of an earlier run killed mid-write
    for (row, col), img in images.items():
        save_png(to_pil(img), os.path.join(outdir, f"{row}-{col}.png"))
    save_png(grid_image(images, row_seeds, col_seeds), os.path.join(outdir, "grid.png"))
    print(f"Wrote {len(images)} images and grid.png to {outdir}")


if __name__ == "__main__":
    main()
