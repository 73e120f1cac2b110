"""Make a training dataset (a zip or a folder of PNGs plus dataset.json), with NVIDIA's options and sources.

A folder or zip of images keeps its own dataset.json labels, its channels (grey or RGB) and its shape: the tool
changes nothing it is not asked to, and says in one line each what it did change (spine/data/folder_import.py).
A VinDr-SpineXR root (a folder with annotations/) goes to the VinDr importer (spine.data.dataset_tool: labels from
the annotation CSVs, DICOM decoding, study-level splits), which takes the VinDr options below; --width and
--height (equal) give its resolution.

\b
Examples:
  python dataset_tool.py --source=images/ --dest=data/spine256.zip --transform=center-crop --width=256 --height=256
  python dataset_tool.py --source=other.zip --dest=data/copy.zip
  python dataset_tool.py --source=/data/vindr-spinexr --dest=data/spine256.zip --width=256 --height=256 \\
      --labels=abnormality
"""

from __future__ import annotations

import click

import dnnlib
from spine.data import dataset_tool as vindr
from spine.data import labels as labels_mod
from spine.data.folder_import import RESIZE_FILTERS, TRANSFORMS, ImportOptions, import_folder

# The VinDr importer's own options: (flag, parameter name, default); refused for other sources.
VINDR_OPTIONS = (
    ("--split", "split", "train"),
    ("--labels", "label_mode", None),
    ("--multi-lesion", "multi_lesion", "drop"),
    ("--rare", "rare", "drop"),
    ("--consensus", "consensus", "any"),
    ("--val-fraction", "val_fraction", 0.0),
    ("--part", "part", "train"),
    ("--seed", "seed", 0),
    ("--workers", "workers", 1),
    ("--preview", "preview", None),
)


def vindr_argv(opts: dict, width: int | None, height: int | None) -> list[str]:
    """The VinDr importer's command line for these options."""
    if width != height:
        raise dnnlib.UserError(f"--width={width} --height={height}: a VinDr import is square; give both equal")
    if opts["transform"] == "center-crop-wide":
        raise dnnlib.UserError("--transform=center-crop-wide: a VinDr import takes center-crop or pad")
    argv = ["--source", opts["source"], "--dest", opts["dest"], "--resize-filter", opts["resize_filter"]]
    argv += ["--resolution", str(width)] if width is not None else []
    argv += ["--transform", opts["transform"]] if opts["transform"] else []
    argv += ["--max-images", str(opts["max_images"])] if opts["max_images"] else []
    for flag, name, default in VINDR_OPTIONS:
        if opts[name] != default:
            argv += [flag, str(opts[name])]
    return argv


@click.command(help=__doc__)
@click.option("--source", required=True, help="Folder or zip of images, or a VinDr-SpineXR root", metavar="PATH")
@click.option("--dest", required=True, help="Output .zip or empty folder", metavar="PATH")
@click.option("--max-images", type=click.IntRange(min=1), help="Output only up to this many images")
@click.option("--resize-filter", type=click.Choice(list(RESIZE_FILTERS)), default="lanczos", show_default=True)
@click.option("--transform", type=click.Choice(TRANSFORMS), help="Input crop/pad/resize mode")
@click.option("--width", type=click.IntRange(min=1), help="Output width")
@click.option("--height", type=click.IntRange(min=1), help="Output height")
@click.option(
    "--channels",
    type=click.Choice(["1", "3"]),
    help="Convert every image to grey (1) or RGB (3) [default: keep the source's; refused when its images differ]",
)
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True, help="VinDr")
@click.option("--labels", "label_mode", type=click.Choice(labels_mod.LABEL_MODES), help="VinDr [abnormality]")
@click.option(
    "--multi-lesion",
    type=click.Choice(labels_mod.MULTI_LESION_POLICIES),
    default="drop",
    show_default=True,
    help="VinDr",
)
@click.option("--rare", type=click.Choice(labels_mod.RARE_POLICIES), default="drop", show_default=True, help="VinDr")
@click.option(
    "--consensus", type=click.Choice(labels_mod.CONSENSUS_POLICIES), default="any", show_default=True, help="VinDr"
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="VinDr: hold out this fraction of studies",
)
@click.option("--part", type=click.Choice(["train", "val"]), default="train", show_default=True, help="VinDr")
@click.option("--seed", type=dnnlib.SEED, default=0, show_default=True, help="VinDr: seed of the train/val split")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="VinDr")
@click.option("--preview", type=click.Path(dir_okay=False), help="VinDr: a PNG grid, one row per class")
def main(**opts) -> None:
    if vindr.is_vindr_root(opts["source"]):
        if opts["channels"] == "3":
            raise dnnlib.UserError("--channels=3: a VinDr import is grey")
        vindr.main.main(vindr_argv(opts, opts["width"], opts["height"]), standalone_mode=False)
        return
    given = [flag for flag, name, default in VINDR_OPTIONS if opts[name] != default]
    if given:
        raise dnnlib.UserError(
            f"{given[0]} applies to a VinDr-SpineXR root (a folder with annotations/); {opts['source']} is not one"
        )
    channels = int(opts["channels"]) if opts["channels"] else None
    options = ImportOptions(
        width=opts["width"],
        height=opts["height"],
        transform=opts["transform"],
        resize_filter=opts["resize_filter"],
        channels=channels,
        max_images=opts["max_images"],
    )
    for line in import_folder(opts["source"], opts["dest"], options):
        click.echo(line)


if __name__ == "__main__":
    main()
