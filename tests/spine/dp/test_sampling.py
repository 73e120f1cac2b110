"""Poisson sampling of images or studies."""

import numpy as np
import pytest
import torch

from spine.dp import sampling


class FakeDataset:
    def __init__(self, studies):
        self.studies = studies

    def __len__(self):
        return len(self.studies)

    def image_info(self, i):
        return dict(file=f"img{i}.png", image_id=str(i), study_id=self.studies[i])


def test_inclusion_rate_is_q_and_independent():
    torch.manual_seed(0)
    sampler = sampling.PoissonSampler([[i] for i in range(200)], 0.1)
    counts = np.zeros(200)
    sizes = []
    for _ in range(500):
        batch = sampler.sample()
        counts[batch.indices] += 1
        sizes.append(len(batch.indices))
    # Each unit: Binomial(500, 0.1), mean 50, sd 6.7; the mean over 200 units has sd 0.47.
    assert abs(counts.mean() - 50) < 2.5
    # Batch sizes vary (Binomial(200, 0.1): variance 18), unlike a fixed-size shuffled batch.
    assert 12 < np.var(sizes) < 26
    assert sampler.expected_batch_size == pytest.approx(20)


def test_study_units_take_all_their_images():
    ds = FakeDataset(["a", "b", "a", "c", "b", "a"])
    groups = sampling.unit_groups(ds, "study")
    assert groups == [[0, 2, 5], [1, 4], [3]]
    torch.manual_seed(1)
    sampler = sampling.PoissonSampler(groups, 0.5)
    for _ in range(20):
        batch = sampler.sample()
        chosen = {ds.studies[i] for i in batch.indices}
        assert sorted(batch.indices.tolist()) == sorted(i for i, s in enumerate(ds.studies) if s in chosen)
        assert batch.num_units == len(chosen)
        for u in range(batch.num_units):  # one study per unit index
            assert len({ds.studies[i] for i in batch.indices[batch.unit_index == u]}) == 1


def test_missing_study_id_is_named():
    with pytest.raises(ValueError, match="img1.png.*--dp-unit=image"):
        sampling.unit_groups(FakeDataset(["a", None]), "study")
