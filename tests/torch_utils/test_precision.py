"""Which reduced precision a device gets: the CPU flag detection, its override, and the GPU rule."""

import pytest
import torch

from torch_utils import precision

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 avx512f avx512bw {extra}
vmx flags\t: amx_bf16_not_a_cpu_flag
bogomips\t: 4792.80
"""


@pytest.fixture
def detect(monkeypatch):
    """Run the detection on given /proc/cpuinfo text and SPINEGAN_CPU_BF16 value (None: unset)."""

    def run(cpuinfo: str, env: str | None = None) -> str | None:
        if env is None:
            monkeypatch.delenv(precision.BF16_ENV_VAR, raising=False)
        else:
            monkeypatch.setenv(precision.BF16_ENV_VAR, env)
        monkeypatch.setattr(precision, "_read_cpuinfo", lambda: cpuinfo)
        precision.cpu_bf16_reason.cache_clear()
        return precision.cpu_bf16_reason()

    yield run
    precision.cpu_bf16_reason.cache_clear()


@pytest.mark.parametrize(
    "extra, expected",
    [("avx512_bf16", "avx512_bf16"), ("amx_bf16 avx512_bf16 amx_tile", "amx_bf16"), ("avx512_vnni", None), ("", None)],
)
def test_flag_is_read_from_the_flags_line_only(extra, expected):
    assert precision.bf16_flag_in_cpuinfo(CPUINFO.format(extra=extra)) == expected


def test_auto_follows_the_cpu_and_the_override_wins_either_way(detect):
    with_bf16, without = CPUINFO.format(extra="avx512_bf16"), CPUINFO.format(extra="")
    assert detect(with_bf16) == "avx512_bf16"
    assert detect(with_bf16, "auto") == "avx512_bf16"
    assert detect(without) is None
    assert detect("") is None  # no /proc/cpuinfo: fp32
    assert detect(with_bf16, "off") is None
    assert detect(without, " ON ") == "SPINEGAN_CPU_BF16=on"
    with pytest.raises(ValueError, match="SPINEGAN_CPU_BF16='fast' is not one of auto, on, off"):
        detect(with_bf16, "fast")


def test_the_answer_is_cached_per_process(detect, monkeypatch):
    assert detect(CPUINFO.format(extra="avx512_bf16")) == "avx512_bf16"
    monkeypatch.setattr(precision, "_read_cpuinfo", lambda: "")
    assert precision.cpu_bf16_reason() == "avx512_bf16"


def test_reduced_dtype_is_fp16_on_cuda_whatever_the_cpu(detect):
    for env in ("on", "off"):
        detect("", env)
        assert precision.reduced_dtype(torch.device("cuda")) == torch.float16
        assert precision.reduced_dtype(torch.device("cpu")) == (torch.bfloat16 if env == "on" else None)
    assert precision.reduced_dtype(torch.device("meta")) is None


def test_this_machine_is_detected_from_proc_cpuinfo(detect):
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    expected = precision.bf16_flag_in_cpuinfo(cpuinfo)
    assert detect(cpuinfo) == expected
    assert (expected is not None) == any(flag in cpuinfo.split() for flag in precision.BF16_CPU_FLAGS)
