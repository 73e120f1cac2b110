"""Generate images with a trained network (our snapshot or checkpoint.pt, or an official StyleGAN2-ADA pickle).

Same options and seeds as NVIDIA's generate.py (z = np.random.RandomState(seed).randn(1, z_dim)), but batched,
device-agnostic, and grayscale networks are saved as 8-bit grayscale PNGs.

\b
Examples:
  python generate.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --seeds=0-35 --class=1 --outdir=out
  python generate.py --network=runs/00000-spine32-cond-demo-kimg30/checkpoint.pt --seeds=1,2,5 --class=0 \\
      --trunc=0.7 --outdir=out
  python generate.py --network=runs/00000-spine32-cond-demo-kimg30/checkpoint.pt \\
      --projected-w=proj/projected_w.npz --outdir=out
"""

from __future__ import annotations

import os

import click
import numpy as np
import torch
from tqdm import tqdm

import dnnlib
from dnnlib.cli import parse_range
from torch_utils import misc
from training.generation import class_labels, save_png, seed_latents, to_pil
from training.networks import NOISE_MODES


@torch.no_grad()
def generate_images(
    G: torch.nn.Module,
    seeds: list[int],
    outdir: str,
    truncation_psi: float,
    noise_mode: str,
    class_idx: int | None,
    batch_size: int,
    device: torch.device,
) -> list[str]:
    """Write seed{seed:04d}.png for every seed; returns the paths."""
    c_all = class_labels(G, class_idx, len(seeds), device)
    z_all = torch.from_numpy(seed_latents(seeds, G.z_dim)).to(device, torch.float32)
    os.makedirs(outdir, exist_ok=True)
    dnnlib.remove_stale_temp_files(outdir)  # of an earlier run killed mid-write
    paths = []
    with tqdm(total=len(seeds), desc="generate", unit="img") as bar:
        for start in range(0, len(seeds), batch_size):
            z, c = z_all[start : start + batch_size], c_all[start : start + batch_size]
            images = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
            for seed, img in zip(seeds[start : start + batch_size], images):
                path = os.path.join(outdir, f"seed{seed:04d}.png")
                save_png(to_pil(img), path)
                paths.append(path)
            bar.update(len(z))
    return paths


def load_projected_w(path: str, G: torch.nn.Module) -> torch.Tensor:
    """The ws of projector.py's projected_w.npz (key 'w', [N, num_ws, w_dim]), checked against the network."""
    try:
        with np.load(path) as data:
            ws = data["w"]
    except (OSError, ValueError, KeyError) as exc:
        raise dnnlib.UserError(f"--projected-w={path}: cannot read an npz with key 'w' ({exc})") from None
    if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise dnnlib.UserError(
            f"--projected-w={path}: w of shape {list(ws.shape)}; the network takes [N, {G.num_ws}, {G.w_dim}]"
        )
    return torch.from_numpy(ws).float()


@torch.no_grad()
def generate_projected(G: torch.nn.Module, ws: torch.Tensor, outdir: str, noise_mode: str) -> list[str]:
    """Write proj{i:02d}.png for every projected w; returns the paths."""
    os.makedirs(outdir, exist_ok=True)
    dnnlib.remove_stale_temp_files(outdir)
    paths = []
    for i, w in enumerate(ws):
        img = G.synthesis(w[None].to(next(G.parameters()).device), noise_mode=noise_mode)
        paths.append(os.path.join(outdir, f"proj{i:02d}.png"))
        save_png(to_pil(img[0]), paths[-1])
    return paths


@click.command(help=__doc__)
@click.option("--network", "network_pkl", help="Network pickle filename or URL", required=True)
@click.option("--seeds", type=parse_range, help="List of random seeds, e.g. 0-35 or 1,2,5")
@click.option("--trunc", "truncation_psi", type=float, help="Truncation psi", default=1, show_default=True)
@click.option("--class", "class_idx", type=int, help="Class label (required for conditional networks)")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True)
@click.option("--projected-w", help="Projection result file (projector.py's projected_w.npz)", type=str, metavar="FILE")
@click.option(
    "--outdir", help="Where to save the output images", type=dnnlib.OutputPath(), required=True, metavar="DIR"
)
@click.option(
    "--batch", "batch_size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per forward pass"
)
@click.option("--device", type=misc.DEVICE, default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available]")
def main(
    network_pkl: str,
    seeds: list[int] | None,
    truncation_psi: float,
    class_idx: int | None,
    noise_mode: str,
    projected_w: str | None,
    outdir: str,
    batch_size: int,
    device: str | None,
) -> None:
    from training.serialization import load_generator

    if seeds is None and projected_w is None:
        raise click.UsageError("pass --seeds or --projected-w")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.BadParameter(f"{outdir} exists and is not a folder", param_hint="--outdir")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f'Loading networks from "{network_pkl}" on {dev}...')
    G = load_generator(network_pkl, dev).eval().requires_grad_(False)
    if projected_w is not None:
        if seeds is not None:
            print("Warning: --seeds is ignored when --projected-w is given")
        paths = generate_projected(G, load_projected_w(projected_w, G), outdir, noise_mode)
        print(f"Wrote {len(paths)} images to {outdir}")
        return
    # a PNG of noise is at most about its raw size
    dnnlib.check_free_space(outdir, "--outdir", len(seeds) * G.img_resolution**2 * G.img_channels)
    paths = generate_images(G, seeds, outdir, truncation_psi, noise_mode, class_idx, batch_size, dev)
    print(f"Wrote {len(paths)} images to {outdir}")


if __name__ == "__main__":
    main()
