"""Compile check of our CUDA plugins, run by `make test` before pytest and by CI.

With nvcc present it builds and imports both extensions (through `torch_utils.custom_ops.get_plugin`,
so the result lands in the normal plugin cache) and prints what it built, how long it took and where.
No GPU is needed: without one it compiles for $TORCH_CUDA_ARCH_LIST, default "8.0;9.0".
Without nvcc it says so and exits 0; a failed build exits 1.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import bias_act_cuda, upfirdn2d_cuda  # noqa: E402

DEFAULT_ARCH_LIST = "8.0;9.0"
_LOADERS = {"bias_act": bias_act_cuda.load_plugin, "upfirdn2d": upfirdn2d_cuda.load_plugin}


@dataclasses.dataclass
class BuildResult:
    """One plugin that built (or was found in the cache) and imported."""

    op: str
    seconds: float
    path: str
    functions: list[str]


def skip_reason() -> str | None:
    """Why no build can be attempted here (no CUDA torch, no nvcc, no ninja), or None.

    An nvcc that exists but does not match torch's CUDA is not a reason to skip: the build then fails.
    """
    try:
        custom_ops.check_build_tools()
    except custom_ops.BuildToolsMissing as exc:
        return str(exc)
    except RuntimeError:  # Reported, with the rest, by the build itself.
        return None
    return None


def build_all() -> list[BuildResult]:
    """Builds (or finds cached) and imports every plugin; raises on the first failure."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
    results = []
    for op, load in _LOADERS.items():
        start = time.time()
        module = load()
        results.append(
            BuildResult(
                op,
                time.time() - start,
                os.path.dirname(module.__file__),
                sorted(name for name in dir(module) if not name.startswith("_")),
            )
        )
    return results


def main() -> int:
    reason = skip_reason()
    if reason is not None:
        print(f"check_cuda_build: skipped: {reason}")
        return 0
    home = custom_ops.find_cuda_home()
    default = "those of the visible GPUs" if torch.cuda.is_available() else DEFAULT_ARCH_LIST
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST") or default
    print(
        f"check_cuda_build: torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"nvcc {custom_ops.nvcc_version(home)} at {home}, arch list {archs}"
    )
    try:
        results = build_all()
    except Exception:  # Report the compiler output, then fail the check.
        traceback.print_exc()
        print("check_cuda_build: FAILED to build the CUDA plugins")
        return 1
    for r in results:
        print(
            f"check_cuda_build: {r.op}: OK, ready in {r.seconds:.1f} s (built or found cached), "
            f"exports {', '.join(r.functions)}, cached at {r.path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
