"""Tolerances for float comparisons, derived from the dtype and the size of the computation.

Two evaluations of the same quantity (ours and a reference, or one code path and another) differ only by rounding.
IEEE 754 rounds each operation to nearest, an error of at most eps/2 of the value's magnitude. A result that passes
through k rounded operations in a chain (an n-term sum or dot product is n, a separable filter with t taps is 2t,
one layer feeding another adds up) is off by at most about k * eps/2 * m, where m bounds the magnitudes along the
way (for a sum, the sum of the absolute values of its terms): the standard bound gamma_k = k u / (1 - k u) of
Higham, "Accuracy and Stability of Numerical Algorithms" (2002), sections 3.1 and 4.2.

The bound holds for every summation order, vector width (SSE, AVX2, AVX-512) and use of fused multiply-add, so a
test at this tolerance passes on any x86-64 CPU, where a tolerance of a few ulps passes only on the machine it was
tuned on. We use eps, not eps/2, because both sides of a comparison may be rounded (two float32 paths).

Comparisons of float64 results with float64 references keep their plain tolerances (1e-12, or torch's default
rtol of 1e-7): the problems in this suite have at most thousands of terms, so the bound is below 1e-12 relative
and those tolerances leave a margin of 1000 or more on any CPU, while still failing a float32 path. Exact
equality (torch.equal, rtol=atol=0) stays where the result is exact: integer counts, permutations, round trips of
stored data, the same operations run twice in one process, values representable exactly (k / 2^n).
"""

from __future__ import annotations

import torch


def rounding_tol(dtype: torch.dtype, ops: int, magnitude: float = 1.0) -> float:
    """Absolute tolerance for `ops` chained rounded operations in `dtype` on values of size up to `magnitude`."""
    if ops < 1 or magnitude <= 0:
        raise ValueError(f"rounding_tol: ops must be >= 1 and magnitude > 0, got ops={ops}, magnitude={magnitude}")
    return ops * torch.finfo(dtype).eps * magnitude
