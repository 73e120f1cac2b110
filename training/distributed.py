"""Multi-process helpers: process-group setup from torchrun's environment, gradient and state synchronisation.

We follow StyleGAN3's scheme rather than DistributedDataParallel: every process starts from rank 0's weights,
and after each phase one flattened gradient is all-reduced and divided by the world size. This keeps the update
rule (`training.phase_update`) in charge of the gradients, which DP-SGD needs, and works the same with gloo (CPU)
and NCCL (GPU).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def init_from_env(device: torch.device, timeout_min: float = 30) -> tuple[int, int]:
    """Join the process group described by torchrun's env:// variables (RANK, WORLD_SIZE, MASTER_ADDR/PORT).

    Returns (rank, world_size); (0, 1) without a launcher. NCCL on CUDA, gloo on CPU; the timeout turns a
    hung peer into an error instead of a silent hang.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1
    _bind_lazy_group_defaults()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", timeout=datetime.timedelta(minutes=timeout_min))
    return dist.get_rank(), dist.get_world_size()


def _bind_lazy_group_defaults() -> None:
    """Import torch.distributed.nn.functional while no process group exists.

    Its functions take `group=group.WORLD` as a default argument, evaluated once, at import. torch imports the
    module lazily: the first optimiser step imports torch._dynamo, which imports it. Imported after
    init_process_group, those defaults hold the default process group for the life of the interpreter, so
    destroy_process_group cannot free it: the gloo threads (transport loop, work runners) stay alive into
    interpreter shutdown, and the process group, destroyed there, aborts the process (std::terminate,
    "terminate called without an active exception", SIGABRT) depending on how far the peer's own teardown
    has got. Imported first, the defaults are None (the default group at call time) and hold nothing.
    """
    import torch.distributed.nn.functional  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


def all_reduce_mean_(params: Sequence[torch.nn.Parameter]) -> None:
    """Average the gradients of `params` across processes, in one collective (no-op for one process)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    for g, piece in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(piece.reshape(g.shape))


def broadcast_module_(module: torch.nn.Module, src: int = 0) -> None:
    """Copy parameters and buffers from rank `src` to every process (no-op for one process)."""
    if world_size() == 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def all_gather_object(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...]; [obj] for one process."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s obj on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group together: a barrier first, then destroy.

    The barrier keeps a fast process from closing its gloo connections while a peer is still in its last
    collective. Destroying frees the process group and joins its threads only if nothing else holds it (see
    `_bind_lazy_group_defaults`).
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
