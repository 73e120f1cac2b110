"""metrics.metric_utils: feature statistics, rank splitting, the real-statistics cache, generator sampling."""

import os

import numpy as np
import PIL.Image
import pytest
import torch
from metrics_helpers import tiny_generator, write_dataset

from metrics.detectors import POOL_PREPROCESSING, Detector
from metrics.metric_utils import (
    FeatureStats,
    MetricOptions,
    compute_feature_stats_for_dataset,
    compute_feature_stats_for_evaluated,
    compute_feature_stats_for_generator,
    rank_slices,
)


class CountingDetector:
    """Mean grey level and a few pixels as features; counts the images it sees."""

    def __init__(self, sha1: str = "counting-v1", preprocessing: str = "test-v1"):
        self.seen = 0
        self.detector = Detector(
            name="counting",
            description="test",
            sha1=sha1,
            preprocessing=preprocessing,
            options="",
            extract=self.extract,
        )

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        self.seen += images.shape[0]
        x = images.to(torch.float32)
        return torch.cat([x.mean(dim=(1, 2, 3))[:, None], x[:, 0, 0, :4]], dim=1)


def options(dataset: str, **kwargs) -> MetricOptions:
    kwargs.setdefault(
        "dataset_kwargs",
        dict(class_name="training.dataset.ImageFolderDataset", path=dataset, use_labels=True, xflip=False),
    )
    return MetricOptions(progress=False, batch_size=5, **kwargs)


def test_feature_stats_match_numpy_and_round_trip(tmp_path):
    x = np.random.RandomState(0).randn(37, 6).astype(np.float32)
    stats = FeatureStats(capture_all=True, capture_mean_cov=True, max_items=30)
    stats.append(x[:20])
    stats.append(torch.from_numpy(x[20:]))
    assert stats.num_items == 30 and stats.is_full()
    mean, cov = stats.get_mean_cov()
    # float64 accumulation of 30 items: < 30 eps64 = 7e-15 relative, so 1e-12 is slack, yet float32 sums would fail.
    np.testing.assert_allclose(mean, x[:30].astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x[:30].astype(np.float64), rowvar=False, bias=True), atol=1e-12)
    stats.save(str(tmp_path / "s.npz"))
    loaded = FeatureStats.load(str(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.get_all(), x[:30])
    np.testing.assert_allclose(loaded.get_mean_cov()[1], cov, rtol=0, atol=0)  # stored data: exact round trip
    with pytest.raises(ValueError, match="6"):
        stats.append(np.zeros((1, 5)))


@pytest.mark.parametrize("num_items, num_gpus", [(23, 1), (23, 3), (5, 4), (40, 2)])
def test_rank_slices_cover_every_item_once_in_order(num_items, num_gpus):
    gathered = []
    opts = [MetricOptions(num_gpus=num_gpus, rank=r, batch_size=4) for r in range(num_gpus)]
    for chunks in zip(*(rank_slices(num_items, o) for o in opts)):
        starts = {start for start, _, _ in chunks}
        counts = {count for _, _, count in chunks}
        assert len(starts) == 1 and len(counts) == 1
        assert len({len(p) for _, p, _ in chunks}) == 1  # every rank takes part in the all-gather equally
        gathered += list((starts.pop() + np.concatenate([p for _, p, _ in chunks]))[: counts.pop()])
    assert gathered == list(range(num_items))


def test_real_statistics_are_cached_and_rebuilt_when_the_dataset_or_detector_changes(dataset, cache_dir):
    counting = CountingDetector()
    first = compute_feature_stats_for_dataset(options(dataset), counting.detector, full=True, capture_all=True)
    assert counting.seen == 12 and first.num_items == 12
    files = os.listdir(cache_dir / "gan-metrics")
    assert len(files) == 1 and files[0].startswith("data-counting-") and files[0].endswith(".npz")

    again = compute_feature_stats_for_dataset(options(dataset), counting.detector, full=True, capture_all=True)
    assert counting.seen == 12  # nothing changed: read from the cache
    np.testing.assert_array_equal(again.get_all(), first.get_all())

    # Same file names, new content: rebuilt.
    path = os.path.join(dataset, "00000", "img00000003.png")
    PIL.Image.fromarray(np.full((8, 8), 7, np.uint8), "L").save(path)
    os.utime(path, ns=(1, 1))
    changed = compute_feature_stats_for_dataset(options(dataset), counting.detector, full=True, capture_all=True)
    assert counting.seen == 24 and changed.get_all()[3, 0] == 7

    # Another detector (different key): rebuilt, into another file.
    other = CountingDetector(sha1="counting-v2")
    compute_feature_stats_for_dataset(options(dataset), other.detector, full=True, capture_all=True)
    assert other.seen == 12 and len(os.listdir(cache_dir / "gan-metrics")) == 3

    # cache=False neither reads nor writes.
    compute_feature_stats_for_dataset(options(dataset, cache=False), other.detector, full=True, capture_all=True)
    assert other.seen == 24 and len(os.listdir(cache_dir / "gan-metrics")) == 3


def test_statistics_cached_under_an_older_preprocessing_are_never_reused(dataset, cache_dir):
    # A cache written by version 1 of the preprocessing, filled with values no detector gives.
    old = CountingDetector(sha1="same-weights", preprocessing="v1:gray-to-rgb,half-pixel-bilinear-299,(x-128)/128")
    compute_feature_stats_for_dataset(options(dataset), old.detector, full=True, capture_all=True)
    (old_file,) = os.listdir(cache_dir / "gan-metrics")
    poisoned = FeatureStats(capture_all=True)
    poisoned.append(np.full((12, 5), -1.0))
    poisoned.save(str(cache_dir / "gan-metrics" / old_file))

    new = CountingDetector(sha1="same-weights", preprocessing=POOL_PREPROCESSING)
    stats = compute_feature_stats_for_dataset(options(dataset), new.detector, full=True, capture_all=True)
    assert new.seen == 12 and stats.get_all().min() >= 0  # recomputed, into another file
    assert len(os.listdir(cache_dir / "gan-metrics")) == 2


def test_real_statistics_go_to_an_explicit_cache_dir_and_are_reused_from_it(dataset, cache_dir, tmp_path):
    counting = CountingDetector()
    here = tmp_path / "experiment" / "real-stats"
    first = compute_feature_stats_for_dataset(
        options(dataset, cache_dir=str(here)), counting.detector, full=True, capture_all=True
    )
    assert counting.seen == 12 and len(os.listdir(here)) == 1
    assert not (cache_dir / "gan-metrics").exists()  # the dnnlib cache is left alone
    again = compute_feature_stats_for_dataset(
        options(dataset, cache_dir=str(here)), counting.detector, full=True, capture_all=True
    )
    assert counting.seen == 12
    np.testing.assert_array_equal(again.get_all(), first.get_all())


def test_real_subsets_and_classes(dataset):
    counting = CountingDetector()
    stats = compute_feature_stats_for_dataset(
        options(dataset, cache=False), counting.detector, max_items=4, capture_all=True
    )
    assert stats.num_items == 4
    ones = compute_feature_stats_for_dataset(
        options(dataset, cache=False), counting.detector, class_index=1, full=True, capture_all=True
    )
    assert ones.num_items == 6 and ones.get_all()[:, 0].min() >= 100  # class 1 images are the bright ones


def test_generated_images_are_seeded_labelled_and_leave_the_global_rng_alone(dataset):
    G = tiny_generator()
    seen_c = []
    forward = G.forward
    G.forward = lambda z, c, **kw: (seen_c.append(c.clone()), forward(z, c, **kw))[1]
    counting = CountingDetector()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = compute_feature_stats_for_generator(options(dataset, G=G), counting.detector, num_gen=11, capture_all=True)
    assert torch.equal(torch.rand(1), expected_next)
    second = compute_feature_stats_for_generator(options(dataset, G=G), counting.detector, num_gen=11, capture_all=True)
    np.testing.assert_array_equal(first.get_all(), second.get_all())
    labels = torch.cat(seen_c[: len(seen_c) // 2])
    assert labels.shape == (11, 2) and set(labels.sum(1).tolist()) == {1.0}  # one-hot labels from the dataset
    one_class = compute_feature_stats_for_generator(
        options(dataset, G=G), counting.detector, num_gen=3, class_index=1, capture_all=True
    )
    assert one_class.num_items == 3 and torch.equal(seen_c[-1], torch.tensor([[0.0, 1.0]] * 3))


def test_generated_pixels_are_the_saved_png_values(dataset):
    G = tiny_generator()
    captured = []
    detector = Detector(
        name="raw",
        description="",
        sha1="raw",
        preprocessing="",
        options="",
        extract=lambda images: (captured.append(images), images.flatten(1).float())[1],
    )
    opts = options(dataset, G=G)
    opts.batch_gen = 3
    compute_feature_stats_for_generator(opts, detector, num_gen=3, class_index=0)
    z = torch.randn([3, 8], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    with torch.no_grad():
        img = G(z, torch.tensor([[1.0, 0.0]] * 3))
    expected = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    assert captured[0].dtype == torch.uint8 and torch.equal(captured[0], expected)


def test_a_second_dataset_takes_the_place_of_generated_images(dataset, tmp_path):
    data2 = write_dataset(str(tmp_path / "data2"), num=7, seed=3)
    opts = options(
        dataset,
        dataset2_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path=data2, xflip=False),
        cache=False,
    )
    counting = CountingDetector()
    every = compute_feature_stats_for_evaluated(opts, counting.detector, num_gen=50, capture_all=True)
    assert every.num_items == 7  # fewer images than asked for: all of them
    direct = compute_feature_stats_for_dataset(options(data2, cache=False), counting.detector, capture_all=True)
    np.testing.assert_array_equal(every.get_all(), direct.get_all())
    subset = compute_feature_stats_for_evaluated(opts, counting.detector, num_gen=4, capture_all=True)
    assert subset.num_items == 4 and set(map(tuple, subset.get_all())) < set(map(tuple, every.get_all()))


def test_label_dimension_mismatch_is_refused(tmp_path):
    path = write_dataset(str(tmp_path / "d"), num=4)
    with pytest.raises(ValueError, match="c_dim=3"):
        compute_feature_stats_for_generator(
            options(path, G=tiny_generator(c_dim=3)), CountingDetector().detector, num_gen=2
        )


def test_a_feature_memo_sends_every_set_through_the_detector_once(dataset, cache_dir):
    """FID (mean/covariance) and precision/recall (all features) of one generator and of a second dataset share
    each set's features: 12 real + 7 generated + 12 second-dataset images seen once, whatever is asked after."""
    counting = CountingDetector()
    memo: dict = {}
    G = tiny_generator()
    opts = options(dataset, G=G, feature_memo=memo)
    for_fid = compute_feature_stats_for_dataset(opts, counting.detector, full=True, capture_mean_cov=True)
    for_pr = compute_feature_stats_for_dataset(opts, counting.detector, full=True, capture_all=True)
    assert counting.seen == 12 and for_pr is for_fid and len(os.listdir(cache_dir / "gan-metrics")) == 1
    fresh = compute_feature_stats_for_dataset(options(dataset), counting.detector, full=True, capture_all=True)
    np.testing.assert_array_equal(for_pr.get_all(), fresh.get_all())  # what a memo-less metric reads
    mean, cov = for_fid.get_mean_cov()
    np.testing.assert_allclose(mean, fresh.get_all().astype(np.float64).mean(axis=0), rtol=1e-12)
    generated = [
        compute_feature_stats_for_generator(opts, counting.detector, num_gen=7, **capture)
        for capture in (dict(capture_mean_cov=True), dict(capture_all=True))
    ]
    assert generated[0] is generated[1] and counting.seen == 24 + 7
    forward = G.forward
    calls = []
    G.forward = lambda z, c, **kw: (calls.append(len(z)), forward(z, c, **kw))[1]
    other = CountingDetector(sha1="counting-v2")
    by_other = compute_feature_stats_for_generator(opts, other.detector, num_gen=7, capture_all=True)
    assert calls == [] and other.seen == 7  # the draw's images are kept: only the new detector runs
    np.testing.assert_array_equal(by_other.get_all(), generated[0].get_all())  # one detector's features, alike
    second = options(dataset, dataset2_kwargs=dict(opts.dataset_kwargs), feature_memo=memo)
    compute_feature_stats_for_evaluated(second, counting.detector, num_gen=12, capture_all=True)
    assert counting.seen == 24 + 7 + 12  # the same images, but drawn as the evaluated set (other options)
    compute_feature_stats_for_evaluated(second, counting.detector, num_gen=12, capture_mean_cov=True)
    assert counting.seen == 24 + 7 + 12
