"""What DP mode refuses or makes safe, because epsilon would not cover it.

  * Minibatch-std couples the samples of a batch: a "per-sample" gradient would depend on other records, so the
    sensitivity is no longer C. D is built with mbstd_num_channels=0; an explicit non-zero value is refused.
  * --mirror appends a flipped copy of every image, i.e. two records per person-image: refused.
  * ADA's p-controller reads sign(D(real)), an unprivatised statistic of the data: --aug=ada is refused. DP mode
    uses a *fixed* p (--aug=fixed --p=...) or no augmentation (the default in DP mode); the augmentation itself is
    per-sample and stays.
  * Conditional fakes: the loop would draw labels from the training set's label histogram. DP mode draws them
    from a public prior (`PublicLabelPrior`: uniform, or probabilities the user states).
  * Several processes would each need their own Poisson sample and share the noise: refused (use --gpus=1).
Not covered and only documented: image grids (reals.png shows training images), metrics computed on the private
data (model selection by FID on private data), hyperparameter search, and the seeded (non-cryptographic) torch
RNG unless --dp-secure-rng=1 draws the noise and the sampling from os.urandom.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

import dnnlib


class DPConfigError(ValueError):
    """An option combination that DP mode refuses; the message names the option."""


def private_discriminator_kwargs(D_kwargs: dict) -> dnnlib.EasyDict:
    """D_kwargs with minibatch-std removed; refuses an explicit mbstd_num_channels > 0."""
    kwargs = dnnlib.EasyDict(copy.deepcopy(dict(D_kwargs)))
    epilogue = dict(kwargs.get("epilogue_kwargs") or {})
    if epilogue.get("mbstd_num_channels", 0) not in (0, None):
        raise DPConfigError(
            f"--dp=1: minibatch-std (mbstd_num_channels={epilogue['mbstd_num_channels']}) couples "
            f"the samples of a batch, so per-sample clipping would not bound a record's influence; "
            f"DP mode builds D with mbstd_num_channels=0"
        )
    epilogue["mbstd_num_channels"] = 0
    kwargs.epilogue_kwargs = dnnlib.EasyDict(epilogue)
    return kwargs


def check_options(mirror: bool, ada: bool, num_processes: int) -> None:
    """Refuse --mirror, --aug=ada and multi-process training in DP mode."""
    if mirror:
        raise DPConfigError(
            "--dp=1 refuses --mirror=1: it duplicates every record (two images per person); "
            "use a flip in the augmentation pipe instead"
        )
    if ada:
        raise DPConfigError(
            "--dp=1 refuses --aug=ada: the ADA controller reads D's scores on real images without "
            "privacy; use --aug=fixed --p=<p> or --aug=noaug"
        )
    if num_processes != 1:
        raise DPConfigError("--dp=1 supports --gpus=1 only (one Poisson sample and one noise draw per step)")


class PublicLabelPrior:
    """Draws fake-image labels from a stated public prior, never from the training set's labels.

    One-hot labels: class k with probability probs[k] (uniform by default). Vector (multi-label) labels: each
    entry is 1 with probability probs[k] (0.5 by default). Uses numpy's global RNG (checkpointed by the loop).
    """

    def __init__(self, c_dim: int, onehot: bool, probs: Sequence[float] | None = None):
        self.c_dim = int(c_dim)
        self.onehot = bool(onehot)
        if probs is None:
            probs = [1 / max(c_dim, 1)] * c_dim if onehot else [0.5] * c_dim
        self.probs = np.asarray(probs, dtype=np.float64)
        if self.probs.shape != (self.c_dim,) or (self.probs < 0).any() or (self.probs > 1).any():
            raise DPConfigError(f"--dp-label-prior: expected {c_dim} probabilities in [0, 1], got {list(probs)}")
        if onehot and c_dim > 0 and abs(self.probs.sum() - 1) > 1e-6:
            raise DPConfigError(f"--dp-label-prior: one-hot class probabilities must sum to 1, got {self.probs.sum()}")

    def __call__(self, n: int) -> np.ndarray:
        """[n, c_dim] float32 labels."""
        if self.c_dim == 0:
            return np.zeros([n, 0], dtype=np.float32)
        if self.onehot:
            classes = np.random.choice(self.c_dim, size=n, p=self.probs)
            return np.eye(self.c_dim, dtype=np.float32)[classes]
        return (np.random.random_sample([n, self.c_dim]) < self.probs).astype(np.float32)
