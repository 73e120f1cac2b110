"""A check that a computation stays on its device: no value read back to the host, no tensor made from host data,
no op on a host tensor.

That is what a CUDA graph needs: it replays device work only, so a value read back during capture is frozen at the
capture's value, a host tensor is baked in, and a data-dependent shape cannot be replayed at all. Run on the meta
device (shapes, no values) the check is a CPU test of code meant for a GPU: any read of a value raises there anyway,
and `forbid_host_access` also catches what the meta device allows (host tensors, host RNG draws, host data copied
to the device).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# Ops whose output shape or host result depends on tensor values.
_READBACK_OPS = frozenset(
    {
        "aten::_local_scalar_dense",
        "aten::nonzero",
        "aten::nonzero_static",
        "aten::masked_select",
        "aten::unique_dim",
        "aten::_unique2",
        "aten::unique_consecutive",
        "aten::is_nonzero",
        "aten::equal",
        "aten::item",
    }
)


class HostAccessError(RuntimeError):
    """A computation checked by `forbid_host_access` touched the host."""


class _HostAccessMode(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name
        if name in _READBACK_OPS:
            raise HostAccessError(f"{name} reads tensor values back to the host")
        if name in ("aten::index", "aten::index_put", "aten::index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] if i is not None
        ):
            raise HostAccessError(f"{name} with a boolean mask reads it back to the host (a nonzero)")
        _check_on_device(name, (args, kwargs))
        if str(kwargs.get("device", "")).startswith("cpu"):
            raise HostAccessError(f"{name} makes a host tensor (a copy to the host, a host RNG draw or constant)")
        out = func(*args, **kwargs)
        _check_on_device(name, out)
        return out


def _check_on_device(name: str, tree: Any) -> None:
    for t in tree_leaves(tree):
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            raise HostAccessError(
                f"{name} runs on a host tensor {tuple(t.shape)} (a host RNG draw, a host constant "
                f"or a copy to or from the host)"
            )


def _refuse_host_data(factory: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Wrap torch.tensor / torch.as_tensor: refuse to build a device tensor from host data (a host-to-device copy,
    invisible to the dispatch mode)."""

    @functools.wraps(factory)
    def wrapper(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not isinstance(data, torch.Tensor):
            raise HostAccessError(f"{factory.__name__} builds a tensor from host data {data!r:.60}")
        return factory(data, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def forbid_host_access() -> Iterator[None]:
    """Within this context any host access of a tensor computation raises `HostAccessError` (see module docstring).

    Meant for tests on a non-CPU device (meta on a CPU-only machine): every tensor must live on that device.
    Caches of device constants must be filled before (a warm-up call, as before a CUDA graph capture).
    """
    saved = torch.tensor, torch.as_tensor
    torch.tensor, torch.as_tensor = _refuse_host_data(torch.tensor), _refuse_host_data(torch.as_tensor)
    try:
        with _HostAccessMode():
            yield
    finally:
        torch.tensor, torch.as_tensor = saved
