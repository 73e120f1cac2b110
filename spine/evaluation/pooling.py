"""Several generators' synthetic datasets as one labelled dataset: the pooled synthetic arm.

    python -m spine.evaluation.pooling --member spinegan=runs/a/synthetic.zip \\
        --member spinegan-seed1=runs/b/synthetic.zip --dest pooled.zip

Why pool: a generator trained for minutes covers a part of the real images' variety (its recall, docs/RESULTS.md
section H3); generators trained with other seeds miss other parts, so their images together train a classifier
better than as many images of one generator (docs/RESULTS.md, section I).

Every image keeps its class; its study id becomes '<member>/<study id>', so the classifier's study-level validation
split never mistakes two generators' images of the same latent seed for one study. dataset.json marks the result
synthetic and names each member's dataset and generator.

A pool at one member's image count (`subsample_dataset`) separates the two things a pool adds, variety and count:
a seeded draw of as many images per class as one member has, from all members' images.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import click
import numpy as np
import PIL.Image

import dnnlib
from spine.classifier.data import LabelledImages, load_labelled_images
from spine.data.dataset_tool import check_dest, image_fname, open_dest
from spine.evaluation.downstream import parse_named_datasets
from training.dataset import ImageFolderDataset


def _png(image: np.ndarray) -> bytes:
    """One uint8 CHW image (1 or 3 channels) as lossless PNG bytes."""
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def _check_compatible(parts: Mapping[str, LabelledImages]) -> None:
    """Same task, classes and image shape in every member: else the labels would not mean one thing."""
    (first_name, first), *rest = parts.items()
    for name, part in rest:
        if (part.label_mode, part.class_names) != (first.label_mode, first.class_names):
            raise dnnlib.UserError(
                f"--member {name}={part.source}: labels {part.label_mode} {part.class_names} "
                f"differ from {first_name}'s {first.label_mode} {first.class_names}"
            )
        if part.images.shape[1:] != first.images.shape[1:]:
            raise dnnlib.UserError(
                f"--member {name}={part.source}: images of shape {list(part.images.shape[1:])} "
                f"differ from {first_name}'s {list(first.images.shape[1:])}"
            )


def pool_datasets(members: Mapping[str, str], dest: str) -> dict[str, Any]:
    """Write every member dataset's images, member by member, into one dataset at `dest` (zip or folder, atomic;
    never overwrites). Returns the dataset.json contents."""
    if len(members) < 2:
        raise dnnlib.UserError(f"pooling needs at least two member datasets, got {len(members)}")
    check_dest(dest)
    parts = {name: load_labelled_images(path) for name, path in members.items()}
    _check_compatible(parts)
    labels: list[list[Any]] = []
    images: list[dict[str, Any]] = []
    with open_dest(dest) as add:
        for name, part in parts.items():
            for image, label, study in zip(part.images.numpy(), part.labels.tolist(), part.study_ids):
                fname = image_fname(len(labels))
                add(fname, _png(image))
                labels.append([fname, label])
                images.append(dict(file=fname, study_id=f"{name}/{study}", member=name, label=label))
        meta = _dataset_json(parts, labels, images)
        add("dataset.json", json.dumps(meta, indent=1).encode("utf-8"))
    return meta


def subsample_dataset(source: str, dest: str, per_class: int, seed: int) -> dict[str, Any]:
    """`per_class` images of each class of the dataset at `source`, drawn without replacement with `seed` and kept in
    their order there, written to `dest` (zip or folder, atomic; never overwrites) with their study ids and each
    pooled image's member. Returns the dataset.json contents."""
    check_dest(dest)
    part = load_labelled_images(source)
    labels = part.labels.numpy()
    rng = np.random.default_rng(seed)
    picks = []
    for k, name in enumerate(part.class_names):
        candidates = np.flatnonzero(labels == k)
        if len(candidates) < per_class:
            raise dnnlib.UserError(f"{source}: {len(candidates)} images of class {name!r}, fewer than {per_class}")
        picks.append(rng.choice(candidates, per_class, replace=False))
    chosen = np.sort(np.concatenate(picks))
    dataset = ImageFolderDataset(source)
    member_of = {image["file"]: image.get("member") for image in dataset.metadata.get("images", [])}
    out_labels: list[list[Any]] = []
    images: list[dict[str, Any]] = []
    with open_dest(dest) as add:
        for n, i in enumerate(chosen):
            fname = image_fname(n)
            add(fname, _png(part.images[i].numpy()))
            out_labels.append([fname, int(labels[i])])
            images.append(dict(file=fname, study_id=part.study_ids[i], label=int(labels[i])))
            member = member_of.get(dataset.image_info(int(i))["file"])
            if member is not None:
                images[-1]["member"] = member
        meta = {
            "labels": out_labels,
            "spinegan": dict(
                label_mode=part.label_mode,
                class_names=list(part.class_names),
                class_counts={name: per_class for name in part.class_names},
                num_images=len(out_labels),
                images=images,
                synthetic=True,
                subsampled_from=dict(dataset=source, sha256=part.sha256, per_class=per_class, seed=seed),
            ),
        }
        add("dataset.json", json.dumps(meta, indent=1).encode("utf-8"))
    return meta


def _dataset_json(
    parts: Mapping[str, LabelledImages], labels: list[list[Any]], images: list[dict[str, Any]]
) -> dict[str, Any]:
    first = next(iter(parts.values()))
    counts = np.bincount([label for _fname, label in labels], minlength=len(first.class_names))
    sources = {
        name: dict(
            dataset=part.source,
            sha256=part.sha256,
            num_images=len(part.labels),
            generator=ImageFolderDataset(part.source).metadata.get("generator"),
        )
        for name, part in parts.items()
    }
    return {
        "labels": labels,
        "spinegan": dict(
            label_mode=first.label_mode,
            class_names=list(first.class_names),
            class_counts=dict(zip(first.class_names, counts.tolist())),
            num_images=len(labels),
            images=images,
            synthetic=True,
            pooled_from=sources,
        ),
    }


@click.command()
@click.option(
    "--member",
    "members",
    multiple=True,
    callback=parse_named_datasets,
    required=True,
    help="NAME=PATH of a synthetic dataset (give two or more)",
)
@click.option("--dest", required=True, type=dnnlib.OutputPath(), help="Pooled dataset: a new .zip or an empty folder")
def main(members: dict[str, str], dest: str) -> None:
    """Pool several generators' synthetic datasets into one labelled dataset."""
    meta = pool_datasets(members, dest)["spinegan"]
    click.echo(f"{dest}: {meta['num_images']} images from {len(members)} datasets, per class {meta['class_counts']}")


if __name__ == "__main__":
    main()  # pylint: disable=no-value-for-parameter
