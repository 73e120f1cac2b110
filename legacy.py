"""NVIDIA-style loading for scripts ported from stylegan2-ada-pytorch: `legacy.load_network_pkl(f)`.

    import dnnlib, legacy
    with dnnlib.util.open_url("runs/00000-.../network-snapshot-000030.pkl") as f:
        G = legacy.load_network_pkl(f)["G_ema"]  # a torch.nn.Module on the CPU, in eval mode

Returns the official dict (G, D, G_ema, augment_pipe, training_set_kwargs; absent entries None, plus our
`metadata`) for our network snapshots, our training checkpoints (checkpoint.pt) and official StyleGAN2-ADA pickles
alike. Unlike the official loader it never executes code stored in the file (training.serialization rebuilds the
networks from their constructor arguments and refuses any other global). TensorFlow pickles are not converted.

As a command (the official `convert_network_pickle`'s options): write any file the loader reads as one of our
snapshots, which load without running code (`--force-fp16` as above):

    python legacy.py --source=ffhq-official.pkl --dest=ffhq.pkl
"""

from __future__ import annotations

import copy
from typing import IO

import click
import torch

import dnnlib
from training.serialization import load_network_pkl as _load
from training.serialization import save_network_snapshot


def load_network_pkl(f: IO[bytes], force_fp16: bool = False) -> dict:
    """The networks of a snapshot, checkpoint or official pickle (an open binary file, e.g. from open_url).

    `force_fp16`: rebuild G, D and G_ema with the official mixed-precision settings (the 4 highest resolutions in
    fp16, conv_clamp 256), as the official loader does; the weights are copied over unchanged.
    """
    data = _load(f)
    if force_fp16:
        for name in ("G", "D", "G_ema"):
            if data.get(name) is not None:
                data[name] = _with_fp16(data[name])
    return data


def _with_fp16(net: torch.nn.Module) -> torch.nn.Module:
    kwargs = copy.deepcopy(net.init_kwargs)
    target = kwargs.synthesis_kwargs if "synthesis_kwargs" in kwargs else kwargs  # G nests them, D does not
    if target.get("num_fp16_res", 0) == 4 and target.get("conv_clamp") == 256:
        return net
    target.update(num_fp16_res=4, conv_clamp=256)
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; leave the caller's RNG alone
        rebuilt = type(net)(**kwargs)
    rebuilt.load_state_dict(net.state_dict())
    return rebuilt.eval().requires_grad_(False)


@click.command(
    help=__doc__.split("\n\n", 1)[0] + "\n\nWrite a snapshot, checkpoint or official pickle (path or "
    "URL) as our network snapshot, read with weights_only=True and no code from the file."
)
@click.option(
    "--source", required=True, help="Snapshot, checkpoint.pt or official pickle (path or URL)", metavar="PATH"
)
@click.option(
    "--dest", required=True, type=dnnlib.OutputPath(dir_okay=False), help="Our snapshot to write", metavar="PATH"
)
@click.option("--force-fp16", is_flag=True, help="Rebuild the networks with the official fp16 settings")
def convert_network_pickle(source: str, dest: str, force_fp16: bool) -> None:
    with dnnlib.util.open_url(source) if "://" in source else open_local(source) as f:
        data = load_network_pkl(f, force_fp16=force_fp16)
    save_network_snapshot(
        dest,
        G=data["G"],
        D=data["D"],
        G_ema=data["G_ema"],
        augment_pipe=data["augment_pipe"],
        training_set_kwargs=data["training_set_kwargs"],
        metadata=data["metadata"],
    )
    names = [name for name in ("G", "D", "G_ema", "augment_pipe") if data[name] is not None]
    click.echo(f"Wrote {', '.join(names)} of {source} to {dest}")


def open_local(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise dnnlib.UserError(f"--source={path}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    convert_network_pickle()
