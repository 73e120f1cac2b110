"""Generic torch helpers: shape assertions, cached constants, copying weights by name, an infinite sampler for
training streams, and the click type of --device. Nothing here knows about GANs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import click
import numpy as np
import torch

# ----------------------------------------------------------------------------------------------------
# Tensors.

_constant_cache: dict[tuple, torch.Tensor] = {}


def constant(
    value: Any,
    shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    memory_format: torch.memory_format | None = None,
) -> torch.Tensor:
    """A cached constant tensor (broadcast to `shape` when given); treat the result as read-only.

    Networks ask for the same small constants (filters, masks) in every forward pass; caching them per
    value, dtype and device avoids a host-to-device copy each time.
    """
    value = np.asarray(value)
    shape = None if shape is None else tuple(int(s) for s in shape)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    device = torch.device("cpu" if device is None else device)
    memory_format = torch.contiguous_format if memory_format is None else memory_format
    key = (value.shape, value.dtype.str, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor = tensor.broadcast_to(shape)
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[int | None]) -> None:
    """Raise AssertionError unless `tensor` has len(ref_shape) dims matching it (None matches any size)."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(
            f"Wrong number of dimensions: got {tensor.ndim} ({tuple(tensor.shape)}), "
            f"expected {len(ref_shape)} ({tuple(ref_shape)})"
        )
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is not None and size != ref_size:
            raise AssertionError(
                f"Wrong size for dimension {idx}: got {size}, expected {ref_size} "
                f"(shape {tuple(tensor.shape)}, expected {tuple(ref_shape)})"
            )


def is_dense(tensor: torch.Tensor) -> bool:
    """Whether `tensor` fills its storage span without gaps or overlaps, in any dimension order.

    True for contiguous and channels_last tensors and their permutations; false for slices with gaps and for
    expanded (stride 0) dimensions. Tensor.is_non_overlapping_and_dense() says the same but is missing from
    some torch releases (2.11), so the CUDA plugins' callers use this.
    """
    expected_stride = 1
    sized = [d for d in range(tensor.ndim) if tensor.shape[d] != 1]  # a size-1 dimension's stride is arbitrary
    for d in sorted(sized, key=tensor.stride):
        if tensor.stride(d) != expected_stride:
            return False
        expected_stride *= tensor.shape[d]
    return True


# ----------------------------------------------------------------------------------------------------
# Modules.


def named_params_and_buffers(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """All parameters and buffers of `module`, by their state_dict names."""
    return list(module.named_parameters()) + list(module.named_buffers())


def copy_params_and_buffers(
    src_module: torch.nn.Module, dst_module: torch.nn.Module, require_all: bool = False
) -> None:
    """Copy every parameter and buffer of `dst_module` that `src_module` has under the same name.

    Unmatched names are skipped unless `require_all`; mismatched shapes are always an error (copy_ would
    otherwise broadcast silently).
    """
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(
                    f"copy_params_and_buffers: {name!r} of {type(dst_module).__name__} is missing "
                    f"from the source {type(src_module).__name__}"
                )
            continue
        src = src_tensors[name]
        if src.shape != tensor.shape:
            raise ValueError(
                f"copy_params_and_buffers: {name!r} has shape {tuple(src.shape)} in the source "
                f"but {tuple(tensor.shape)} in the destination"
            )
        with torch.no_grad():
            tensor.copy_(src.detach())


# ----------------------------------------------------------------------------------------------------
# Data.


class InfiniteSampler(torch.utils.data.Sampler):
    """An endless stream of dataset indices, split between `num_replicas` ranks.

    The stream walks through a seeded permutation; each visited slot is then swapped with a random
    slot among the `window_size * len(dataset)` most recently visited ones, so later passes reshuffle
    gradually without epoch boundaries. The first pass is exactly one permutation. Global stream
    position k goes to rank k % num_replicas.
    """

    def __init__(
        self,
        dataset: Any,
        rank: int = 0,
        num_replicas: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        window_size: float = 0.5,
    ):
        if len(dataset) <= 0:
            raise ValueError("InfiniteSampler: the dataset is empty")
        if not (num_replicas >= 1 and 0 <= rank < num_replicas):
            raise ValueError(
                f"InfiniteSampler: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}"
            )
        if not 0 <= window_size <= 1:
            raise ValueError(f"InfiniteSampler: window_size must be in [0, 1], got {window_size}")
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(size) if self.shuffle else np.arange(size)
        window = int(round(size * self.window_size)) if self.shuffle else 0
        position = 0
        while True:
            slot = position % size
            if position % self.num_replicas == self.rank:
                yield int(order[slot])
            if window >= 2:
                # Only slots already visited (in this pass or, by wrapping, the previous one).
                other = (slot - int(rng.integers(min(window, position + 1)))) % size
                order[slot], order[other] = order[other], order[slot]
            position += 1


# ----------------------------------------------------------------------------------------------------
# Command line.


class DeviceType(click.ParamType):
    """The click type of every --device: a torch device string this machine has ('cpu', 'cuda', 'cuda:1', ...).

    A misspelt device or a GPU the machine lacks is a usage error before any work, not a traceback from the first
    tensor moved there. The value stays the string given (tools record it as plain data).
    """

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            device = torch.device(value)
        except (RuntimeError, TypeError):
            self.fail(f"{value!r} is not a device; expected cpu, cuda or cuda:N", param, ctx)
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if count == 0:
                self.fail(f"{value}: this machine has no CUDA device; use cpu", param, ctx)
            if device.index is not None and device.index >= count:
                self.fail(f"{value}: this machine has CUDA devices 0..{count - 1}", param, ctx)
        return str(value)


DEVICE = DeviceType()
