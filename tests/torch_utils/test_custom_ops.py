"""CPU tests of torch_utils.custom_ops: implementation choice, logging, cache keys, build tooling."""

from __future__ import annotations

import fcntl
import importlib.util
import io
import logging
import os
import subprocess
import sys
import time
import types

import pytest
import torch

import dnnlib
from torch_utils import custom_ops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    monkeypatch.delenv(custom_ops.IMPL_ENV_VAR, raising=False)
    custom_ops.reset_state()
    yield
    custom_ops.reset_state()


class _FakeCudaTensor:
    """Only `.device` is read by resolve_impl, so a stand-in lets CPU tests cover the CUDA branches."""

    device = torch.device("cuda", 0)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretends a GPU exists; returns a function registering a fake plugin for op 'fake_op'."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))

    return lambda load_plugin: _register_fake(monkeypatch, custom_ops._PLUGIN_MODULES, load_plugin)


def _register_fake(monkeypatch, table: dict, load_plugin) -> None:
    """Makes op 'fake_op' in `table` (the CUDA plugins' or the CPU kernels') load through `load_plugin`."""
    module = types.ModuleType("fake_plugin_module")
    module.load_plugin = load_plugin
    monkeypatch.setitem(sys.modules, "fake_plugin_module", module)
    monkeypatch.setitem(table, "fake_op", "fake_plugin_module")


def test_auto_on_cpu_takes_the_cpu_kernel_where_one_exists_and_never_builds_a_cuda_plugin(monkeypatch):
    def failure(op_name, kind="cuda"):
        assert kind == "cpu", "must not build a CUDA plugin for a CPU tensor"
        return None

    monkeypatch.setattr(custom_ops, "_plugin_failure", failure)
    assert custom_ops.resolve_impl("bias_act", None, torch.zeros(2)) == "cpu"
    assert custom_ops.resolve_impl("bias_act", "auto", torch.zeros(2)) == "cpu"
    assert custom_ops.resolve_impl("upfirdn2d", None, torch.zeros(2)) == "ref"
    assert custom_ops.resolve_impl("upfirdn2d", "cpu", torch.zeros(2)) == "ref"  # its only CPU implementation


@pytest.fixture
def fake_cpu_kernel(monkeypatch):
    """Returns a function registering a fake CPU kernel for op 'fake_op'."""
    return lambda load_plugin: _register_fake(monkeypatch, custom_ops._CPU_PLUGIN_MODULES, load_plugin)


def test_failed_cpu_build_falls_back_under_auto_and_raises_when_forced(fake_cpu_kernel, caplog):
    def broken():
        raise OSError("g++ exploded")

    fake_cpu_kernel(broken)
    with caplog.at_level(logging.INFO, logger=custom_ops.__name__):
        assert custom_ops.resolve_impl("fake_op", None, torch.zeros(1)) == "ref"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "fake_op: using reference path (CPU kernel build/load failed: OSError: g++ exploded)")
    ]
    with pytest.raises(RuntimeError, match="fake_op: impl='cpu'.*OSError: g\\+\\+ exploded"):
        custom_ops.resolve_impl("fake_op", "cpu", torch.zeros(1))
    with pytest.raises(RuntimeError, match="bias_act: impl='cpu'.*tensor is on cuda, not on the CPU"):
        custom_ops.resolve_impl("bias_act", "cpu", _FakeCudaTensor())


@pytest.mark.parametrize(
    "env, requested, expected",
    [
        ("ref", None, "ref"),
        (" REF ", "auto", "ref"),
        ("auto", None, "ref"),
        ("", None, "ref"),
        ("cuda", "ref", "ref"),
    ],
)
def test_env_var_and_explicit_request(monkeypatch, env, requested, expected):
    monkeypatch.setenv(custom_ops.IMPL_ENV_VAR, env)
    assert custom_ops.resolve_impl("upfirdn2d", requested, torch.zeros(1)) == expected


def test_forced_cuda_on_cpu_tensor_raises(monkeypatch):
    with pytest.raises(RuntimeError, match=r"bias_act: impl='cuda'.*tensor is on cpu"):
        custom_ops.resolve_impl("bias_act", "cuda", torch.zeros(1))
    monkeypatch.setenv(custom_ops.IMPL_ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match="upfirdn2d"):
        custom_ops.resolve_impl("upfirdn2d", None, torch.zeros(1))


def test_bad_values_raise(monkeypatch):
    with pytest.raises(ValueError, match=r"bias_act: impl='gpu'"):
        custom_ops.resolve_impl("bias_act", "gpu", torch.zeros(1))
    monkeypatch.setenv(custom_ops.IMPL_ENV_VAR, "fast")
    with pytest.raises(ValueError, match="SPINEGAN_OPS_IMPL='fast'"):
        custom_ops.resolve_impl("bias_act", None, torch.zeros(1))


def test_one_log_line_per_op(caplog):
    with caplog.at_level(logging.INFO, logger=custom_ops.__name__):
        for _ in range(3):
            custom_ops.resolve_impl("upfirdn2d", None, torch.zeros(1))
        custom_ops.resolve_impl("bias_act", "ref", torch.zeros(1))
    assert [r.getMessage() for r in caplog.records] == [
        "upfirdn2d: using reference path (no CPU kernel exists for op 'upfirdn2d')",
        "bias_act: using reference path (requested)",
    ]


def test_choices_logged_to_a_stream_inside_the_block_only():
    stream = io.StringIO()
    before = custom_ops.logger.handlers[:], custom_ops.logger.level, custom_ops.logger.propagate
    with custom_ops.choices_logged_to(stream):
        for _ in range(2):
            custom_ops.resolve_impl("upfirdn2d", None, torch.zeros(1))
    custom_ops.resolve_impl("bias_act", "ref", torch.zeros(1))  # after the block: not in the stream
    assert stream.getvalue() == "upfirdn2d: using reference path (no CPU kernel exists for op 'upfirdn2d')\n"
    assert (custom_ops.logger.handlers, custom_ops.logger.level, custom_ops.logger.propagate) == before


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_plugin_that_loads_is_used_and_logged(kind, fake_gpu, fake_cpu_kernel, caplog):
    register, tensor, folder, used = {
        "cuda": (fake_gpu, _FakeCudaTensor(), "/cache/spinegan/fake-1234-sm_90", "CUDA plugin (sm_90, "),
        "cpu": (fake_cpu_kernel, torch.zeros(1), "/cache/spinegan/fake-12-cpu_ab", "CPU kernel (built for this CPU, "),
    }[kind]
    calls = []
    register(lambda: calls.append(1) or types.SimpleNamespace(__file__=f"{folder}/fake.so"))
    with caplog.at_level(logging.INFO, logger=custom_ops.__name__):
        assert custom_ops.resolve_impl("fake_op", None, tensor) == kind
        assert custom_ops.resolve_impl("fake_op", kind, tensor) == kind
    assert calls == [1]  # loaded once per process
    assert [r.getMessage() for r in caplog.records] == [f"fake_op: using {used}cached at {folder})"]


def test_failed_build_falls_back_loudly_under_auto_and_raises_when_forced(fake_gpu, caplog):
    def broken():
        raise OSError("nvcc exploded")

    fake_gpu(broken)
    with caplog.at_level(logging.INFO, logger=custom_ops.__name__):
        assert custom_ops.resolve_impl("fake_op", None, _FakeCudaTensor()) == "ref"
    assert caplog.records[0].levelno == logging.WARNING
    assert (
        caplog.records[0].getMessage()
        == "fake_op: using reference path (plugin build/load failed: OSError: nvcc exploded)"
    )
    with pytest.raises(RuntimeError, match="fake_op: impl='cuda'.*OSError: nvcc exploded"):
        custom_ops.resolve_impl("fake_op", "cuda", _FakeCudaTensor())


def test_cache_dir_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    src, hdr = tmp_path / "op.cu", tmp_path / "op.h"
    src.write_text("kernel A")
    hdr.write_text("header A")
    first = custom_ops.plugin_cache_dir("op_plugin", [str(src)], [str(hdr)], ["8.0", "9.0"])
    assert os.path.dirname(first) == str(tmp_path / "ext" / "spinegan")
    assert os.path.basename(first).startswith("op_plugin-") and first.endswith("-sm_80-sm_90")
    assert custom_ops.plugin_cache_dir("op_plugin", [str(src)], [str(hdr)], ["8.0", "9.0"]) == first
    assert custom_ops.plugin_cache_dir("op_plugin", [str(src)], [str(hdr)], ["9.0"]).endswith("-sm_90")
    hdr.write_text("header B")
    changed = custom_ops.plugin_cache_dir("op_plugin", [str(src)], [str(hdr)], ["8.0", "9.0"])
    assert changed != first and changed.endswith("-sm_80-sm_90")
    flagged = custom_ops.plugin_cache_dir(
        "op_plugin", [str(src)], [str(hdr)], ["8.0", "9.0"], {"extra_cflags": ["-O1"]}
    )
    assert flagged != changed


def test_finished_build_for_more_archs_is_reused(tmp_path):
    root = tmp_path / "spinegan"
    for name, done in [("op-abc-sm_80-sm_90", True), ("op-abc-sm_86", False), ("op-xyz-sm_90", True)]:
        (root / name).mkdir(parents=True)
        if done:
            (root / name / custom_ops._BUILD_DONE_MARKER).write_text("")
    assert custom_ops._complete_build_covering(str(root / "op-abc-sm_90"), ["9.0"]) == str(root / "op-abc-sm_80-sm_90")
    both = str(root / "op-abc-sm_80-sm_90")
    assert custom_ops._complete_build_covering(both, ["8.0", "9.0"]) == both
    assert custom_ops._complete_build_covering(str(root / "op-abc-sm_86"), ["8.6"]) is None  # unfinished
    assert custom_ops._complete_build_covering(str(root / "op-abc-sm_75"), ["7.5"]) is None


def test_nvcc_version_of_the_local_toolkit():
    try:
        home = custom_ops.find_cuda_home()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    version = custom_ops.nvcc_version(home)
    assert version.count(".") == 1 and all(part.isdigit() for part in version.split("."))


def test_arch_list_from_env(monkeypatch):
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0 8.0;8.6+PTX")
    assert custom_ops.cuda_arch_list() == ["8.0", "8.6+PTX", "9.0"]
    assert custom_ops._arch_tag(custom_ops.cuda_arch_list()) == "sm_80-sm_86ptx-sm_90"
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="TORCH_CUDA_ARCH_LIST"):
        custom_ops.cuda_arch_list()


def test_populate_is_atomic_and_idempotent(tmp_path):
    src = tmp_path / "a.cu"
    src.write_text("x")
    target = tmp_path / "cache" / "plugin-abc"
    target.parent.mkdir()
    custom_ops._populate_atomically(str(target), [str(src)])
    src.write_text("changed")  # A second call must keep the first, complete copy.
    custom_ops._populate_atomically(str(target), [str(src)])
    assert (target / "a.cu").read_text() == "x"
    assert sorted(os.listdir(target.parent)) == ["plugin-abc"]  # no temporary folder left behind


def test_get_plugin_builds_once_then_imports_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setattr(custom_ops, "check_build_tools", lambda: "/usr/local/cuda")
    monkeypatch.setattr(custom_ops, "_loaded_plugins", {})
    src = tmp_path / "op.cu"
    src.write_text("kernel")
    builds, imports = [], []

    def fake_build(name, build_dir, sources, arch_list, kwargs):
        builds.append((name, os.listdir(build_dir), list(arch_list), kwargs))
        (tmp_path / "spinegan" / os.path.basename(build_dir) / custom_ops._BUILD_DONE_MARKER).write_text("")
        return "built module"

    monkeypatch.setattr(custom_ops, "_build", fake_build)
    monkeypatch.setattr(custom_ops, "_import_built", lambda name, build_dir: imports.append(build_dir) or "imported")
    assert custom_ops.get_plugin("op_plugin", [str(src)], extra_cflags=["-O2"]) == "built module"
    assert custom_ops.get_plugin("op_plugin", [str(src)], extra_cflags=["-O2"]) == "built module"  # in memory
    assert builds == [("op_plugin", ["op.cu"], ["9.0"], {"extra_cflags": ["-O2"]})] and imports == []
    monkeypatch.setattr(custom_ops, "_loaded_plugins", {})  # a new process: finds the finished build
    assert custom_ops.get_plugin("op_plugin", [str(src)], extra_cflags=["-O2"]) == "imported"
    assert len(builds) == 1 and imports == [
        custom_ops.plugin_cache_dir("op_plugin", [str(src)], [], ["9.0"], {"extra_cflags": ["-O2"]})
    ]


def test_get_cpu_plugin_builds_once_per_cpu_for_that_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(custom_ops, "_loaded_plugins", {})
    monkeypatch.setattr(custom_ops, "cpu_tag", lambda: "cpu_one")
    src = tmp_path / "op.cpp"
    src.write_text("kernel")
    builds, imports = [], []

    def fake_build(name, build_dir, sources, kwargs):
        builds.append((name, os.path.basename(build_dir), os.listdir(build_dir), kwargs))
        return "built module"

    monkeypatch.setattr(custom_ops, "_build_cpu", fake_build)
    monkeypatch.setattr(custom_ops, "_import_built", lambda name, build_dir: imports.append(build_dir) or "imported")
    assert custom_ops.get_cpu_plugin("op_cpu", [str(src)]) == "built module"
    assert custom_ops.get_cpu_plugin("op_cpu", [str(src)]) == "built module"  # in memory
    assert len(builds) == 1 and builds[0][1].endswith("-cpu_one") and builds[0][2] == ["op.cpp"]
    assert builds[0][3] == {"extra_cflags": ["-O3", "-march=native", "-mprefer-vector-width=512"]}
    monkeypatch.setattr(custom_ops, "_loaded_plugins", {})  # a new process on the same CPU: the finished build
    assert custom_ops.get_cpu_plugin("op_cpu", [str(src)]) == "imported" and len(builds) == 1
    monkeypatch.setattr(custom_ops, "_loaded_plugins", {})  # another CPU sharing the home folder: its own build
    monkeypatch.setattr(custom_ops, "cpu_tag", lambda: "cpu_two")
    assert custom_ops.get_cpu_plugin("op_cpu", [str(src)]) == "built module"
    assert [b[1].rsplit("-", 1)[1] for b in builds] == ["cpu_one", "cpu_two"]


def test_cpu_tag_follows_the_cpu(monkeypatch):
    assert custom_ops.cpu_tag() == custom_ops.cpu_tag() and custom_ops.cpu_tag().startswith("cpu_")
    here = custom_ops.cpu_tag()
    monkeypatch.setattr(custom_ops.platform, "machine", lambda: "another-machine")
    assert custom_ops.cpu_tag() != here


@pytest.mark.timeout(60)
def test_lock_is_exclusive_and_released_when_its_holder_dies(tmp_path):
    """A killed builder must not leave a stale lock (StyleGAN2-ADA issue 11)."""
    lock, held = tmp_path / "plugin.lock", tmp_path / "held"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, pathlib, sys, time\n"
                f'f = open({str(lock)!r}, "a"); fcntl.flock(f, fcntl.LOCK_EX)\n'
                f"pathlib.Path({str(held)!r}).touch(); time.sleep(60)\n"
            ),
        ]
    )
    try:
        for _ in range(600):
            if held.exists():
                break
            time.sleep(0.05)
        assert held.exists(), "the helper process never took the lock"
        with open(lock, "a") as file, pytest.raises(BlockingIOError):
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        holder.kill()
        holder.wait()
    with custom_ops._exclusive_lock(str(lock)):  # would hang if the lock outlived its holder
        pass


def test_missing_tools_give_clear_errors(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(custom_ops.glob, "glob", lambda pattern: [])
    with pytest.raises(custom_ops.BuildToolsMissing, match="nvcc"):
        custom_ops.check_build_tools()
    monkeypatch.setattr(custom_ops, "find_cuda_home", lambda: str(tmp_path))
    monkeypatch.setattr(custom_ops, "nvcc_version", lambda home: "12.4")
    with pytest.raises(RuntimeError, match=r"nvcc 12.4 .* major versions must match.*nvidia-cuda-nvcc-cu13"):
        custom_ops.check_build_tools()
    monkeypatch.setattr(custom_ops, "nvcc_version", lambda home: torch.version.cuda)
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", cpp_extension.CUDA_HOME)
    with pytest.raises(custom_ops.BuildToolsMissing, match="pip install ninja"):
        custom_ops.check_build_tools()


def _load_check_cuda_build(monkeypatch):
    """tools/ is not a package: import the script by path (registered, as its dataclass needs)."""
    path = os.path.join(ROOT, "tools", "check_cuda_build.py")
    spec = importlib.util.spec_from_file_location("check_cuda_build", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "check_cuda_build", module)
    spec.loader.exec_module(module)
    return module


def test_check_tool_skips_without_tools_and_fails_on_mismatch(monkeypatch, capsys):
    check = _load_check_cuda_build(monkeypatch)

    def missing():
        raise custom_ops.BuildToolsMissing("nvcc (the CUDA compiler) was not found")

    monkeypatch.setattr(custom_ops, "check_build_tools", missing)
    assert check.main() == 0
    assert "check_cuda_build: skipped: nvcc (the CUDA compiler) was not found" in capsys.readouterr().out

    def mismatch():
        raise RuntimeError("nvcc 12.4 at /x cannot build for torch")

    monkeypatch.setattr(custom_ops, "check_build_tools", mismatch)
    monkeypatch.setattr(custom_ops, "_loaded_plugins", {})  # as in a fresh process: nothing built yet
    monkeypatch.setattr(custom_ops, "find_cuda_home", lambda: "/x")
    monkeypatch.setattr(custom_ops, "nvcc_version", lambda home: "12.4")
    assert check.main() == 1
    out = capsys.readouterr().out
    assert "nvcc 12.4 at /x" in out and "FAILED" in out


@pytest.mark.slow
def test_extensions_compile_and_import(monkeypatch):
    """Builds both plugins (minutes the first time, then cached) wherever nvcc exists; no GPU needed."""
    check = _load_check_cuda_build(monkeypatch)
    reason = check.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    if not torch.cuda.is_available():
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", os.environ.get("TORCH_CUDA_ARCH_LIST", check.DEFAULT_ARCH_LIST))
    results = {r.op: r for r in check.build_all()}
    assert results["bias_act"].functions == ["bias_act"]
    assert results["upfirdn2d"].functions == ["upfirdn2d"]
    for r in results.values():
        assert os.path.isfile(os.path.join(r.path, custom_ops._BUILD_DONE_MARKER))


def test_a_bad_env_value_is_a_user_error_before_any_op_runs(monkeypatch):
    monkeypatch.setenv(custom_ops.IMPL_ENV_VAR, "fast")
    with pytest.raises(dnnlib.UserError, match="SPINEGAN_OPS_IMPL='fast' is not one of auto, ref, cuda, cpu"):
        custom_ops.check_env()
    monkeypatch.setenv(custom_ops.IMPL_ENV_VAR, " CPU ")
    custom_ops.check_env()
