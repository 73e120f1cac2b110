"""Which reduced precision a device computes natively: fp16 on CUDA, bfloat16 on a CPU with bf16 instructions.

StyleGAN2-ADA marks the blocks that tolerate low precision (`num_fp16_res`, with `conv_clamp`) and runs them in
fp16 on GPUs. A CPU has no fast fp16, but one with native bfloat16 dot products (AVX512_BF16 on AMD Zen 4 and
Intel Cooper Lake and later, AMX_BF16 on Sapphire Rapids and later) runs convolutions about twice as fast in bf16
as in fp32. Without those instructions oneDNN emulates bf16 and gains nothing, so such CPUs stay in fp32.

`SPINEGAN_CPU_BF16` overrides the detection: 'auto' (default), 'on' (bf16 even where it is emulated: tests on any
machine) or 'off' (fp32).
"""

from __future__ import annotations

import functools
import os

import torch

BF16_ENV_VAR = "SPINEGAN_CPU_BF16"
BF16_CHOICES = ("auto", "on", "off")
# /proc/cpuinfo flags of native bf16 arithmetic, preferred first (what the log names).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def bf16_flag_in_cpuinfo(cpuinfo: str) -> str | None:
    """The first of BF16_CPU_FLAGS on a 'flags' line of /proc/cpuinfo text, or None."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return next((flag for flag in BF16_CPU_FLAGS if flag in flags), None)


def _read_cpuinfo() -> str:
    """/proc/cpuinfo, or '' where there is none (macOS, Windows: no bf16 detection there, so fp32)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


@functools.cache
def cpu_bf16_reason() -> str | None:
    """Why this process computes reduced-precision blocks in bf16 on the CPU (the CPU flag, or the override),
    or None for fp32. Cached: the answer cannot change within a process (tests call `cache_clear`)."""
    mode = os.environ.get(BF16_ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in BF16_CHOICES:
        raise ValueError(f"{BF16_ENV_VAR}={os.environ[BF16_ENV_VAR]!r} is not one of {', '.join(BF16_CHOICES)}")
    if mode != "auto":
        return f"{BF16_ENV_VAR}=on" if mode == "on" else None
    return bf16_flag_in_cpuinfo(_read_cpuinfo())


def reduced_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype of the blocks marked for reduced precision on `device`: fp16 on CUDA, bf16 on a CPU with
    native bf16, None (fp32) elsewhere."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and cpu_bf16_reason() is not None:
        return torch.bfloat16
    return None
