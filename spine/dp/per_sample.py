"""Per-sample gradients of the discriminator's real-data loss, with R1 inside each sample's loss.

DP-SGD bounds each record's influence by clipping *its own* gradient, so we need one gradient per real image:
`torch.func.vmap(torch.func.grad(...))` over `torch.func.functional_call(D, ...)`. Each sample's loss is

    softplus(-D(x_i, c_i)) + r1_weight * |d D(x_i, c_i) / d x_i|^2     (r1_weight: gamma / 2 times the lazy gain)

i.e. the real term of StyleGAN2's D loss plus (when r1_weight > 0) its R1 penalty taken per sample (the loss's own
`training.loss.real_logit_loss` and `r1_penalty`, differentiated here with `torch.func`), so the
penalty is clipped together with the adversarial term and costs no extra privacy. The discriminator must not
couple samples (minibatch-std off, see `spine.dp.guards`). `x_i` is the image D sees: when an augment pipe is on,
the caller augments the batch first, so R1 is taken w.r.t. the augmented image (the official loss differentiates
through the augmentation to the un-augmented image; both are functions of record i alone).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator

import torch
from torch.func import functional_call, grad, vmap

from torch_utils import custom_ops
from training.loss import r1_penalty, real_logit_loss

PerSampleGrads = dict[str, torch.Tensor]  # parameter name -> [N, *param.shape]


@contextlib.contextmanager
def functorch_compatible_ops() -> Iterator[None]:
    """The reference bias_act/upfirdn2d: torch.func cannot trace the CUDA plugins' autograd Functions.

    Uses the documented $SPINEGAN_OPS_IMPL override, restored on exit. (The reference ops and
    conv2d_gradfix are new-style autograd Functions with vmap rules, so torch.func traces them as they are.)
    """
    previous = os.environ.get(custom_ops.IMPL_ENV_VAR)
    os.environ[custom_ops.IMPL_ENV_VAR] = "ref"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(custom_ops.IMPL_ENV_VAR, None)
        else:
            os.environ[custom_ops.IMPL_ENV_VAR] = previous


def trainable_parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached trainable parameters by name (Freeze-D weights are buffers and are left out)."""
    return {name: p.detach() for name, p in module.named_parameters()}


def real_sample_loss(
    D: torch.nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    img: torch.Tensor,
    c: torch.Tensor,
    r1_weight: float,
) -> torch.Tensor:
    """Scalar loss of ONE real image `img` [C,H,W] with label `c` [c_dim] (see module docstring)."""

    def logit(x: torch.Tensor) -> torch.Tensor:
        return functional_call(D, (params, buffers), (x[None], c[None])).sum()

    loss = real_logit_loss(logit(img))
    if r1_weight > 0:
        loss = loss + r1_weight * r1_penalty(grad(logit)(img)[None])[0]
    return loss


def per_sample_real_gradients(
    D: torch.nn.Module,
    img: torch.Tensor,
    c: torch.Tensor,
    r1_weight: float = 0.0,
    names: Collection[str] | None = None,
) -> PerSampleGrads:
    """Gradient of `real_sample_loss` for each image of the batch, w.r.t. the trainable parameters of D named in
    `names` (None: every one; the others enter the loss as constants).

    img: [N, C, H, W] in [-1, 1] (already augmented if augmentation is on); c: [N, c_dim].
    r1_weight: gamma / 2 times the lazy-regularisation gain, 0 for no R1 at this step.
    """
    if img.ndim != 4 or c.ndim != 2 or img.shape[0] != c.shape[0]:
        raise ValueError(
            f"per_sample_real_gradients: expected img [N,C,H,W] and c [N,c_dim], "
            f"got {tuple(img.shape)} and {tuple(c.shape)}"
        )
    params = trainable_parameters(D)
    buffers = {name: b.detach() for name, b in D.named_buffers()}
    if names is not None:
        buffers.update({name: p for name, p in params.items() if name not in names})
        params = {name: p for name, p in params.items() if name in names}
    sample_grad = grad(lambda p, x, y: real_sample_loss(D, p, buffers, x, y, r1_weight))
    with functorch_compatible_ops():
        return vmap(sample_grad, in_dims=(None, 0, 0))(params, img.detach(), c.detach())
