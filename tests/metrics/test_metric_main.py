"""metrics.metric_main: calc_metric end to end on tiny detectors, result keys, per-class values, jsonl lines."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from metrics_helpers import ReplayGenerator, tiny_generator
from training import distributed as dist_utils
from training.networks import Generator
from metrics import metric_main
from metrics.detectors import POOL_PREPROCESSING, file_sha1
from metrics.metric_names import MetricNameError


def run(metric: str, G: torch.nn.Module, dataset: str, **options) -> dict:
    """calc_metric called exactly as the training loop calls it, plus options."""
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=dataset, use_labels=True, xflip=False)
    options.setdefault("batch_size", 5)
    return metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=kwargs, num_gpus=1, rank=0,
                                   device=torch.device("cpu"), progress=False, **options)


def test_generator_that_replays_the_dataset_scores_perfectly(dataset, pool_detector_file):
    result = run("fid12_full", ReplayGenerator(dataset), dataset, detector=pool_detector_file)
    assert set(result) == {"results", "metric", "total_time", "total_time_str", "num_gpus", "detector",
                           "detector_sha1", "preprocessing"}
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


def test_report_metric_appends_official_lines(tmp_path):
    result = dict(results=dict(fid2k=1.5), metric="fid2k", total_time=3.2, total_time_str="3s", num_gpus=1,
                  detector="d")
    for _ in range(2):
        metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(tmp_path / "network-snapshot.pkl"))
    lines = [json.loads(line) for line in (tmp_path / "metric-fid2k.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    assert set(lines[0]) == {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl",
                             "timestamp", "detector"}
    assert lines[0]["snapshot_pkl"] == "network-snapshot.pkl" and lines[1]["results"] == {"fid2k": 1.5}


DISTRIBUTED_METRICS = ("fid7_full", "kid7", "pr72_full_inception")


def noiseless_generator() -> Generator:
    # Per-pixel noise comes from each process's own RNG; without it the images depend on z and c only.
    torch.manual_seed(0)
    return Generator(z_dim=8, c_dim=2, w_dim=8, img_resolution=8, img_channels=1, mapping_kwargs=dict(num_layers=1),
                     synthesis_kwargs=dict(channel_base=64, channel_max=8, use_noise=False)).eval()


def distributed_worker(rank: int, port: int, dataset: str, detector: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    torch.set_num_threads(1)
    dist_utils.init_from_env(torch.device("cpu"))
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=dataset, use_labels=True, xflip=False)
    results = {}
    for metric in DISTRIBUTED_METRICS:
        results.update(metric_main.calc_metric(metric=metric, G=noiseless_generator(), dataset_kwargs=kwargs,
                                               num_gpus=2, rank=rank, device=torch.device("cpu"), progress=False,
                                               batch_size=2, detector=detector, cache=False).results)
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
            single.update(run(metric, noiseless_generator(), dataset, detector=pool_detector_file,
                              batch_size=2).results)
    finally:
        torch.set_num_threads(threads)
    for rank in range(2):
        with open(f"{out}.{rank}") as f:
            assert json.load(f) == pytest.approx(single, rel=1e-9, abs=1e-12)
