"""Seeded phantom of the VinDr-SpineXR dataset: lateral lumbar radiographs as DICOM, with box annotations.

It writes the layout of ``docs/CONTRACTS.md`` (VinDr-SpineXR section) so that the importer, the
classifier and the whole pipeline can be exercised without the restricted real data:

    <root>/annotations/{train,test}.csv    image_id,study_id,series_id,rad_id,lesion_type,xmin,ymin,xmax,ymax
    <root>/{train,test}_images/<image_id>.dicom
    <root>/phantom_identities.json          the fake identifying values written into the DICOM headers,
                                            and the files deliberately truncated

Studies hold 1-3 images of the same patient and never straddle the splits. The DICOM files vary as
real ones do (MONOCHROME1/2, 12 bits stored, rescale, window, portrait sizes). Everything, UIDs
included, derives from ``seed``: the same arguments give byte-identical CSVs and pixel data,
whatever the number of workers.

    python -m spine.phantom --outdir phantom --num-train 2000 --num-test 500 --seed 0
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from typing import Any

import click
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid
from tqdm import tqdm

import dnnlib
from spine.data.labels import NO_FINDING
from spine.phantom.image import MAX_STORED, Difficulty, Study, render_image
from spine.phantom.lesions import reader_box

DEFAULT_DIFFICULTY = 0.2  # calibrated: small-CNN abnormality AUC near 0.886 (bench/phantom_calibration.py)
CSV_COLUMNS = ("image_id", "study_id", "series_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax")
SPLITS = ("train", "test")
IDENTITY_FILE = "phantom_identities.json"
RADIOLOGISTS = ("rad1", "rad2", "rad3", "rad4", "rad5")
SECOND_READER_RATE = 0.3  # abnormal images read by two radiologists
RESCALES = ((1.0, 0.0), (1.0, 0.0), (0.5, 0.0), (2.0, -100.0), (1.0, -1024.0))


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """Everything needed to make one image independently of the others (so workers can share the work)."""

    split: str
    study_index: int
    image_index: int  # within the study
    image_id: str
    study_id: str
    series_id: str
    seed: int
    size: int
    difficulty: float
    lesion_scale: float
    zoom: float
    truncate: bool
    path: str


def _hex_id(seed: int, *parts: object) -> str:
    """A 32-hex identifier derived from the seed (VinDr ids are 32-hex strings)."""
    return hashlib.md5("/".join(str(p) for p in ("spinegan-phantom", seed) + parts).encode()).hexdigest()


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *parts]))


def plan_split(seed: int, split: str, num_images: int) -> list[tuple[int, int]]:
    """(study_index, images_in_study) for a split: 1-3 images per study (about 2), ``num_images`` in all."""
    rng = _rng(seed, SPLITS.index(split), 0)
    plan, total = [], 0
    while total < num_images:
        count = min(int(rng.choice((1, 2, 3), p=(0.2, 0.55, 0.25))), num_images - total)
        plan.append((len(plan), count))
        total += count
    return plan


def plan_jobs(
    tmp_root: str,
    num_train: int,
    num_test: int,
    seed: int,
    size: int,
    difficulty: float,
    truncated: int,
    lesion_scale: float = 1.0,
    zoom: float = 1.0,
) -> list[ImageJob]:
    jobs = []
    for split, num in zip(SPLITS, (num_train, num_test)):
        for study_index, count in plan_split(seed, split, num):
            study_id = _hex_id(seed, split, "study", study_index)
            for image_index in range(count):
                image_id = _hex_id(seed, split, "image", study_index, image_index)
                jobs.append(
                    ImageJob(
                        split,
                        study_index,
                        image_index,
                        image_id,
                        study_id,
                        _hex_id(seed, split, "series", study_index, image_index),
                        seed,
                        size,
                        difficulty,
                        lesion_scale,
                        zoom,
                        False,
                        os.path.join(tmp_root, f"{split}_images", f"{image_id}.dicom"),
                    )
                )
    if truncated:
        picks = set(_rng(seed, 99).choice(len(jobs), size=truncated, replace=False).tolist())
        jobs = [dataclasses.replace(j, truncate=True) if i in picks else j for i, j in enumerate(jobs)]
    return jobs


def fake_identity(seed: int, split: str, study_index: int) -> dict[str, str]:
    """Identifying header values of a study's patient, all fake and recorded so leaks can be tested."""
    rng = _rng(seed, SPLITS.index(split), 1, study_index)
    tag = _hex_id(seed, split, "patient", study_index)
    birth = f"{rng.integers(1930, 2000)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    study_date = f"{rng.integers(2015, 2021)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    return {
        "PatientName": f"PHANTOM^{tag[:10].upper()}",
        "PatientID": f"PID-{tag[10:20].upper()}",
        "PatientBirthDate": birth,
        "StudyDate": study_date,
        "AccessionNumber": f"ACC{tag[20:28].upper()}",
        "InstitutionName": f"PHANTOM HOSPITAL {tag[28:].upper()}",
        "ReferringPhysicianName": f"DOCTOR^{tag[:6].upper()}",
    }


def build_dataset(job: ImageJob, pixels: np.ndarray, identity: dict[str, str], rng: np.random.Generator) -> Dataset:
    """A DX For Presentation dataset holding the 12-bit image, with header variation as in real archives."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[job.image_id])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[job.study_id])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[job.series_id])
    for key, value in identity.items():
        setattr(ds, key, value)
    ds.PatientSex = str(rng.choice(("M", "F")))
    ds.PatientAge = f"{int(identity['StudyDate'][:4]) - int(identity['PatientBirthDate'][:4]):03d}Y"
    ds.Modality = "DX"
    ds.BodyPartExamined = "LSPINE"
    ds.ViewPosition = str(rng.choice(("LL", "RL")))
    ds.Manufacturer = "SpineGAN phantom"
    ds.SeriesNumber, ds.InstanceNumber = job.image_index + 1, 1
    monochrome1 = bool(rng.random() < 0.5)
    stored = (MAX_STORED - pixels).astype(np.uint16) if monochrome1 else pixels
    ds.set_pixel_data(
        stored,
        photometric_interpretation="MONOCHROME1" if monochrome1 else "MONOCHROME2",
        bits_stored=12,
        generate_instance_uid=False,
    )  # keep the seeded SOP Instance UID
    slope, intercept = RESCALES[int(rng.integers(len(RESCALES)))]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    lo, hi = np.percentile(stored[::4, ::4], (1, 99)) * slope + intercept
    ds.WindowCenter = round(float(0.5 * (lo + hi)), 1)
    ds.WindowWidth = round(float(max(hi - lo, 1.0) * rng.uniform(1.0, 1.3)), 1)
    spacing = round(0.14 * 2500 / pixels.shape[0], 4)  # a ~35 cm field, as on a 2500-row detector
    ds.PixelSpacing = ds.ImagerPixelSpacing = [spacing, spacing]
    return ds


def annotation_rows(
    job: ImageJob, findings: list, rows: int, cols: int, rng: np.random.Generator
) -> list[dict[str, str]]:
    """CSV rows of one image: one row per box per radiologist, or one "No finding" row."""
    base = {"image_id": job.image_id, "study_id": job.study_id, "series_id": job.series_id}
    readers = [str(r) for r in rng.choice(RADIOLOGISTS, size=2, replace=False)]
    if not findings:
        return [dict(base, rad_id=readers[0], lesion_type=NO_FINDING, xmin="", ymin="", xmax="", ymax="")]
    count = 2 if rng.random() < SECOND_READER_RATE else 1
    out = []
    for rad in readers[:count]:
        for kind, box in findings:
            x0, y0, x1, y1 = reader_box(rng, box, rows, cols, spread=0.04)
            out.append(
                dict(
                    base,
                    rad_id=rad,
                    lesion_type=kind,
                    xmin=f"{x0:.1f}",
                    ymin=f"{y0:.1f}",
                    xmax=f"{x1:.1f}",
                    ymax=f"{y1:.1f}",
                )
            )
    return out


def make_image(job: ImageJob) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Render, encode and write one image; returns its CSV rows and the patient's fake identity."""
    difficulty = Difficulty.from_level(job.difficulty, job.lesion_scale, job.zoom)
    split_code = SPLITS.index(job.split)
    study = Study.sample(_rng(job.seed, split_code, 2, job.study_index), difficulty)
    rng = _rng(job.seed, split_code, 3, job.study_index, job.image_index)
    pixels, findings = render_image(study, rng, job.size, difficulty)
    identity = fake_identity(job.seed, job.split, job.study_index)
    build_dataset(job, pixels, identity, rng).save_as(job.path, enforce_file_format=True)
    if job.truncate:
        # Keep the header and part of the pixel data, like the undecodable file of the real release.
        with open(job.path, "r+b") as f:
            f.truncate(int(os.path.getsize(job.path) * 0.6))
    return annotation_rows(job, findings, *pixels.shape, rng), identity


def _write_csv(path: str, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _run_jobs(jobs: list[ImageJob], workers: int) -> list[tuple[list[dict[str, str]], dict[str, str]]]:
    progress = dict(total=len(jobs), desc="phantom", unit="img", leave=False)
    if workers <= 1:
        return [make_image(job) for job in tqdm(jobs, **progress)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        return list(tqdm(pool.imap(make_image, jobs, chunksize=16), **progress))


def _check_destination(root: str, overwrite: bool = False) -> None:
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        if not overwrite:
            raise FileExistsError(
                f"--outdir {root!r} exists and is not an empty directory; "
                "choose a new path, or --overwrite to replace an earlier phantom"
            )
        if not os.path.isfile(os.path.join(root, IDENTITY_FILE)):
            raise FileExistsError(
                f"--outdir {root!r} holds no {IDENTITY_FILE}; --overwrite replaces only a phantom tree"
            )


def _summary(root: str, jobs: list[ImageJob], results: list, seconds: float, **options: Any) -> dict[str, Any]:
    images_per_class: dict[str, int] = {}
    boxes_per_class: dict[str, int] = {}
    normal = {s: 0 for s in SPLITS}
    for job, (rows, _) in zip(jobs, results):
        kinds = {r["lesion_type"] for r in rows}
        normal[job.split] += NO_FINDING in kinds
        for kind in kinds:
            images_per_class[kind] = images_per_class.get(kind, 0) + 1
        for r in rows:
            if r["lesion_type"] != NO_FINDING:
                boxes_per_class[r["lesion_type"]] = boxes_per_class.get(r["lesion_type"], 0) + 1
    counts = {s: sum(j.split == s for j in jobs) for s in SPLITS}
    return dict(
        root=root,
        num_images=counts,
        num_studies={s: len({j.study_id for j in jobs if j.split == s}) for s in SPLITS},
        normal_fraction={s: normal[s] / max(counts[s], 1) for s in SPLITS},
        images_per_class=dict(sorted(images_per_class.items())),
        boxes_per_class=dict(sorted(boxes_per_class.items())),
        truncated=[f"{j.split}_images/{j.image_id}.dicom" for j in jobs if j.truncate],
        seconds=round(seconds, 2),
        **options,
    )


def make_phantom_tree(
    root: str,
    num_train: int,
    num_test: int,
    seed: int = 0,
    difficulty: float = DEFAULT_DIFFICULTY,
    size: int = 256,
    truncated: int = 0,
    workers: int = 1,
    lesion_scale: float = 1.0,
    zoom: float = 1.0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a VinDr-SpineXR-shaped phantom tree at ``root`` (built beside it, then renamed) and summarise it.
    ``overwrite`` replaces an earlier phantom tree there (never another folder).

    ``lesion_scale`` (default 1: the calibrated phantom) draws the overlay lesions larger, for low resolutions;
    ``zoom`` (default 1) magnifies every image, so fewer vertebral levels fill it.
    """
    if num_train < 1 or num_test < 0:
        raise ValueError(f"need num_train >= 1 and num_test >= 0, got {num_train} and {num_test}")
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels, got {size}")
    if not 0 <= truncated <= num_train + num_test:
        raise ValueError(f"truncated must be between 0 and the number of images, got {truncated}")
    Difficulty.from_level(difficulty, lesion_scale, zoom)  # validates the level, the scale and the zoom
    root = os.path.abspath(root)
    _check_destination(root, overwrite)
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
    try:
        dnnlib.util.apply_default_mode(tmp, directory=True)
        for sub in ("annotations", "train_images", "test_images"):
            os.makedirs(os.path.join(tmp, sub))
        start = time.time()
        jobs = plan_jobs(tmp, num_train, num_test, seed, size, difficulty, truncated, lesion_scale, zoom)
        results = _run_jobs(jobs, workers)
        for split in SPLITS:
            _write_csv(
                os.path.join(tmp, "annotations", f"{split}.csv"),
                [row for job, (rows, _) in zip(jobs, results) if job.split == split for row in rows],
            )
        summary = _summary(
            root,
            jobs,
            results,
            time.time() - start,
            seed=seed,
            difficulty=difficulty,
            size=size,
            lesion_scale=lesion_scale,
            zoom=zoom,
        )
        studies = {job.study_id: identity for job, (_, identity) in zip(jobs, results)}
        values = sorted({v for identity in studies.values() for v in identity.values()})
        with open(os.path.join(tmp, IDENTITY_FILE), "w") as f:
            json.dump(
                {
                    "format": "spinegan-phantom-identities-v1",
                    "identifying_values": values,
                    "studies": studies,
                    "truncated": summary["truncated"],
                },
                f,
                indent=1,
                sort_keys=True,
            )
        _check_destination(root, overwrite)
        if overwrite:
            dnnlib.replace_folder(tmp, root)
        else:
            os.rename(tmp, root)  # replaces an empty directory atomically; fails if one appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


@click.command()
@click.option(
    "--outdir",
    required=True,
    type=dnnlib.OutputPath(),
    help="Destination; must not exist or be empty (or be an earlier phantom, with --overwrite).",
)
@click.option("--num-train", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--num-test", type=click.IntRange(min=0), default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--difficulty",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_DIFFICULTY,
    show_default=True,
    help="0 = obvious lesions and clean images, 1 = subtle lesions and noisy images.",
)
@click.option("--size", type=click.IntRange(min=64), default=256, show_default=True, help="Image width in pixels.")
@click.option(
    "--truncated",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Number of DICOM files to cut short (listed in phantom_identities.json).",
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--lesion-scale",
    type=click.FloatRange(0.25, 4.0),
    default=1.0,
    show_default=True,
    help="Size multiplier of spurs, spots and metal (1 = calibrated; larger for low resolutions).",
)
@click.option(
    "--zoom",
    type=click.FloatRange(0.5, 2.0),
    default=1.0,
    show_default=True,
    help="Magnification of every image (1 = about seven vertebral levels in view, 1.5 = about five).",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier phantom tree at --outdir.")
def main(
    outdir: str,
    num_train: int,
    num_test: int,
    seed: int,
    difficulty: float,
    size: int,
    truncated: int,
    workers: int,
    lesion_scale: float,
    zoom: float,
    overwrite: bool,
) -> None:
    """Write a seeded VinDr-SpineXR-shaped phantom dataset (lateral lumbar DICOMs with box annotations)."""
    try:
        summary = make_phantom_tree(
            outdir,
            num_train,
            num_test,
            seed=seed,
            difficulty=difficulty,
            size=size,
            truncated=truncated,
            workers=workers,
            lesion_scale=lesion_scale,
            zoom=zoom,
            overwrite=overwrite,
        )
    except (FileExistsError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(summary, indent=1))
