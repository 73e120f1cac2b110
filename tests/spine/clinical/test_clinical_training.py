"""train.py --clinical-loss: refused before training when the classifier does not fit the labels; recorded in
training_options.json, the checkpoint options and every snapshot's metadata; the term reaches the loss."""

import json
import os

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import train
from spine.classifier.artifact import ClassifierSpec, save_classifier
from spine.classifier.models import build_network
from spine.clinical.loss import ClinicalLoss
from training.serialization import load_network_pkl


def write_dataset(path: str, names=("normal", "abnormal"), n: int = 8, res: int = 16) -> str:
    os.makedirs(path)
    rng = np.random.RandomState(0)
    for i in range(n):
        PIL.Image.fromarray(rng.randint(0, 255, [res, res]).astype(np.uint8), "L").save(f"{path}/img{i:02d}.png")
    meta = {
        "labels": [[f"img{i:02d}.png", i % len(names)] for i in range(n)],
        "spinegan": {"label_mode": "abnormality" if len(names) == 2 else "lesion", "class_names": list(names)},
    }
    with open(f"{path}/dataset.json", "w") as f:
        json.dump(meta, f)
    return path


def write_classifier(path: str, names=("normal", "abnormal")) -> str:
    mode = "abnormality" if len(names) == 2 else "lesion"
    outputs = 1 if mode == "abnormality" else len(names)
    kwargs = dict(width=4, num_blocks=2)
    spec = ClassifierSpec(
        arch="small_cnn",
        arch_kwargs=kwargs,
        label_mode=mode,
        class_names=tuple(names),
        resolution=16,
        channels=1,
        intensity=dict(scale=1 / 255, mean=[0.5], std=[0.25]),
        thresholds=tuple([0.5] * (1 if outputs == 1 else outputs)),
    )
    save_classifier(path, build_network("small_cnn", 1, outputs, kwargs), spec, dict(dataset_sha256="abc"))
    return path


def invoke(tmp_path, data: str, *extra: str):
    return CliRunner().invoke(
        train.main,
        [
            "--outdir",
            str(tmp_path / "runs"),
            "--data",
            data,
            "--cfg",
            "demo",
            "--cond",
            "1",
            "--metrics",
            "none",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    "names, message",
    [
        (("normal", "sick"), "class names ['normal', 'sick'] vs the dataset's ['normal', 'abnormal']"),
        (
            ("a", "b", "c"),
            "label mode 'lesion' vs the dataset's 'abnormality'; 3 classes vs conditioning labels of dimension 2",
        ),
    ],
)
def test_mismatched_classifier_is_refused_before_training(tmp_path, captured, names, message):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"), names)
    result = invoke(tmp_path, data, "--clinical-loss", pkl)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not captured and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--clinical-weight", "0.1"], "--clinical-weight needs --clinical-loss"),
        (["--clinical-augment", "1"], "--clinical-augment needs --clinical-loss"),
        (["--clinical-loss", "{pkl}", "--clinical-weight", "0"], "expected a positive weight"),
        (["--d-cond", "0"], "--d-cond=0 needs --clinical-loss"),
    ],
)
def test_bad_clinical_options(tmp_path, captured, extra, message):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"))
    result = invoke(tmp_path, data, *[e.format(pkl=pkl) for e in extra])
    assert result.exit_code == 1 and message in result.output, result.output


def test_clinical_augment_is_recorded_and_reaches_the_term(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"))
    result = invoke(tmp_path, data, "--clinical-loss", pkl, "--clinical-augment", "1")
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert os.path.basename(args.run_dir).endswith("-clinical0.1-aug") and args.clinical["augment"] is True
    (term,) = train.build_plugins(args, "cpu").generator_terms
    assert term.augment is not None and term.augment["flip_prob"] == 0.3


def test_unconditional_discriminator_leaves_the_class_to_the_clinical_loss(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"))
    result = invoke(tmp_path, data, "--clinical-loss", pkl, "--d-cond", "0", "--batch", "4", "--aug", "noaug")
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert "-cond-gonly-" in os.path.basename(args.run_dir) and args.D_kwargs.c_dim == 0
    args.total_kimg = 0.004  # one iteration of 4 images, then the snapshot
    args.kimg_per_tick = 0.004
    train.run_process(0, args)
    snapshots = sorted(f for f in os.listdir(args.run_dir) if f.startswith("network-snapshot-"))
    nets = load_network_pkl(os.path.join(args.run_dir, snapshots[-1]))
    assert nets["G"].c_dim == 2 and nets["D"].c_dim == 0 and not hasattr(nets["D"], "mapping")


def test_clinical_loss_is_recorded_and_reaches_the_loss(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"))
    result = invoke(
        tmp_path, data, "--clinical-loss", pkl, "--clinical-weight", "0.25", "--batch", "4", "--aug", "noaug"
    )
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert os.path.basename(args.run_dir).endswith("-clinical0.25")
    saved = json.load(open(os.path.join(args.run_dir, "training_options.json")))
    assert saved["clinical"]["weight"] == 0.25 and saved["clinical"]["classifier"] == os.path.abspath(pkl)
    assert len(saved["clinical"]["classifier_sha256"]) == 64
    assert "clinical" not in train.loop_kwargs(args)  # a plug-in setting, not a training_loop argument
    terms = train.build_plugins(args, "cpu").generator_terms
    assert len(terms) == 1 and isinstance(terms[0], ClinicalLoss) and terms[0].weight == 0.25
    assert saved["clinical"]["augment"] is False and terms[0].augment is None

    args.total_kimg = 0.008  # two iterations of 4 images
    args.kimg_per_tick = 0.004
    train.run_process(0, args)
    snapshots = sorted(f for f in os.listdir(args.run_dir) if f.startswith("network-snapshot-"))
    meta = load_network_pkl(os.path.join(args.run_dir, snapshots[-1]))["metadata"]
    assert meta["clinical_loss"]["weight"] == 0.25 and meta["clinical_loss"]["class_names"] == ["normal", "abnormal"]
    stats = [json.loads(line) for line in open(os.path.join(args.run_dir, "stats.jsonl"))]
    assert any("Loss/G/clinical" in s for s in stats)
    checkpoint = train.ckpt.load_checkpoint(os.path.join(args.run_dir, "checkpoint.pt"))
    assert checkpoint["options"]["clinical"]["weight"] == 0.25


def test_domain_metric_without_a_classifier_is_refused(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    result = CliRunner().invoke(
        train.main,
        [
            "--outdir",
            str(tmp_path / "runs"),
            "--data",
            data,
            "--cfg",
            "demo",
            "--cond",
            "1",
            "--metrics",
            "fid10_spine",
        ],
    )
    assert result.exit_code == 1 and "--metrics-classifier" in result.output, result.output
    assert not captured and not (tmp_path / "runs").exists()


def test_domain_metric_at_snapshots_uses_the_clinical_classifier(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"))
    result = CliRunner().invoke(
        train.main,
        [
            "--outdir",
            str(tmp_path / "runs"),
            "--data",
            data,
            "--cfg",
            "demo",
            "--cond",
            "1",
            "--metrics",
            "label_fidelity4",
            "--batch",
            "4",
            "--aug",
            "noaug",
            "--clinical-loss",
            pkl,
        ],
    )
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert args.metric_kwargs == dict(classifier=os.path.abspath(pkl))
    args.total_kimg = 0.004  # one iteration, then the final snapshot and its metric
    args.kimg_per_tick = 0.004
    train.run_process(0, args)
    lines = [json.loads(line) for line in open(os.path.join(args.run_dir, "metric-label_fidelity4.jsonl"))]
    assert lines and all(0 <= line["results"]["label_fidelity4_accuracy"] <= 1 for line in lines)
