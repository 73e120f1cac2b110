"""Generate images with a trained network (our snapshot or checkpoint.pt, or an official StyleGAN2-ADA pickle).

Same options and seeds as NVIDIA's generate.py (z = np.random.RandomState(seed).randn(1, z_dim)), but batched,
device-agnostic, and grayscale networks are saved as 8-bit grayscale PNGs.

\b
Examples:
  python generate.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --seeds=0-35 --class=1 --outdir=out
  python generate.py --network=runs/00000-spine32-cond-demo-kimg30/checkpoint.pt --seeds=1,2,5 --class=0 \\
      --trunc=0.7 --outdir=out
"""

from __future__ import annotations

import os
import re

import click
import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

import dnnlib
from dnnlib import MAX_SEED
from torch_utils import misc


def parse_range(text: str) -> list[int]:
    """'1,2,5' or '0-35' (inclusive) or a mix ('0-3,7') -> list of seeds, each in 0..MAX_SEED."""
    values = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 0-35", param_hint="--seeds")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise click.BadParameter(f"range {part!r} ends before it starts", param_hint="--seeds")
        if hi > MAX_SEED:  # checked before expanding: a typo must not build billions of seeds
            raise click.BadParameter(f"seed {hi} is out of range: seeds are 0..{MAX_SEED}", param_hint="--seeds")
        values += range(lo, hi + 1)
    return values


def class_labels(G: torch.nn.Module, class_idx: int | None, num: int, device: torch.device) -> torch.Tensor:
    """One-hot labels [num, c_dim] for a conditional network; [num, 0] for an unconditional one."""
    c = torch.zeros([num, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            print("Warning: --class is ignored: the network is unconditional")
        return c
    if class_idx is None:
        raise click.UsageError(f"the network is conditional ({G.c_dim} classes): pass --class=0..{G.c_dim - 1}")
    if not 0 <= class_idx < G.c_dim:
        raise click.UsageError(f"--class={class_idx} is out of range: the network has classes 0..{G.c_dim - 1}")
    c[:, class_idx] = 1
    return c


def seed_latents(seeds: list[int], z_dim: int) -> np.ndarray:
    """The official latents: np.random.RandomState(seed).randn(1, z_dim) per seed."""
    return np.concatenate([np.random.RandomState(seed).randn(1, z_dim) for seed in seeds])


def to_pil(img: torch.Tensor) -> PIL.Image.Image:
    """One CHW image in [-1, 1] -> 'L' (1 channel) or 'RGB' (3 channels) PIL image."""
    arr = (img.permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
    if arr.shape[2] == 1:
        return PIL.Image.fromarray(arr[:, :, 0], "L")
    if arr.shape[2] == 3:
        return PIL.Image.fromarray(arr, "RGB")
    raise ValueError(f"cannot save an image with {arr.shape[2]} channels (expected 1 or 3)")


def save_png(image: PIL.Image.Image, path: str) -> None:
    with dnnlib.atomic_write(path, "wb") as f:
        image.save(f, format="PNG")


@torch.no_grad()
def generate_images(G: torch.nn.Module, seeds: list[int], outdir: str, truncation_psi: float, noise_mode: str,
                    class_idx: int | None, batch_size: int, device: torch.device) -> list[str]:
    """Write seed{seed:04d}.png for every seed; returns the paths."""
    c_all = class_labels(G, class_idx, len(seeds), device)
    z_all = torch.from_numpy(seed_latents(seeds, G.z_dim)).to(device, torch.float32)
    os.makedirs(outdir, exist_ok=True)
    dnnlib.remove_stale_temp_files(outdir)  # of an earlier run killed mid-write
    paths = []
    with tqdm(total=len(seeds), desc="generate", unit="img") as bar:
        for start in range(0, len(seeds), batch_size):
            z, c = z_all[start:start + batch_size], c_all[start:start + batch_size]
            images = G(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)
            for seed, img in zip(seeds[start:start + batch_size], images):
                path = os.path.join(outdir, f"seed{seed:04d}.png")
                save_png(to_pil(img), path)
                paths.append(path)
            bar.update(len(z))
    return paths


@click.command(help=__doc__)
@click.option("--network", "network_pkl", help="Network pickle filename or URL", required=True)
@click.option("--seeds", type=parse_range, help="List of random seeds, e.g. 0-35 or 1,2,5", required=True)
@click.option("--trunc", "truncation_psi", type=float, help="Truncation psi", default=1, show_default=True)
@click.option("--class", "class_idx", type=int, help="Class label (required for conditional networks)")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--outdir", help="Where to save the output images", type=dnnlib.OutputPath(), required=True,
              metavar="DIR")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per forward pass")
@click.option("--device", type=misc.DEVICE, default=None,
              help="cpu, cuda, cuda:1 ... [default: cuda if available]")
def main(network_pkl: str, seeds: list[int], truncation_psi: float, class_idx: int | None, noise_mode: str,
         outdir: str, batch_size: int, device: str | None) -> None:
    from training.serialization import load_generator
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.BadParameter(f"{outdir} exists and is not a folder", param_hint="--outdir")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f'Loading networks from "{network_pkl}" on {dev}...')
    G = load_generator(network_pkl, dev).eval().requires_grad_(False)
    # a PNG of noise is at most about its raw size
    dnnlib.check_free_space(outdir, "--outdir", len(seeds) * G.img_resolution ** 2 * G.img_channels)
    paths = generate_images(G, seeds, outdir, truncation_psi, noise_mode, class_idx, batch_size, dev)
    print(f"Wrote {len(paths)} images to {outdir}")


if __name__ == "__main__":
    main()
