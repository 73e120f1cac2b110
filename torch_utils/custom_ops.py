"""Choosing and building our CUDA plugins and CPU kernels.

Three public entry points:

- `resolve_impl` decides, per call, whether an op runs its CUDA plugin, its CPU kernel or its pure-PyTorch
  reference path. It never falls back silently from a *forced* request, and it logs which
  implementation is active the first time an op resolves (StyleGAN2-ADA's silent fall-back is
  its most reported problem).
- `get_plugin` JIT-builds a CUDA plugin with `torch.utils.cpp_extension.load` (ninja) once per machine,
  into a cache directory keyed by the sources and the GPU architectures, under a file lock so
  that several processes or ranks can call it at once (one builds, the others wait).
- `get_cpu_plugin` does the same for a CPU kernel, compiled with -march=native and keyed by the CPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import importlib
import importlib.util
import logging
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

import torch

import dnnlib

logger = logging.getLogger(__name__)

IMPL_ENV_VAR = "SPINEGAN_OPS_IMPL"
IMPL_CHOICES = ("auto", "ref", "cuda", "cpu")

# Op name -> module whose `load_plugin()` builds and returns that op's extension module: CUDA plugins, CPU kernels.
# Imported lazily so that a run never touches the build machinery of the other device.
_PLUGIN_MODULES = {
    "bias_act": "torch_utils.ops.bias_act_cuda",
    "upfirdn2d": "torch_utils.ops.upfirdn2d_cuda",
}
_CPU_PLUGIN_MODULES = {"bias_act": "torch_utils.ops.bias_act_cpu"}

_plugin_status: dict[tuple[str, str], str | None] = {}  # (op, 'cuda'|'cpu') -> None when it loaded, else why not.
_op_plugins: dict[tuple[str, str], types.ModuleType] = {}  # (op, 'cuda'|'cpu') -> its loaded extension module.
_logged: set[tuple[str, str]] = set()  # (op, decision) pairs already logged.
_loaded_plugins: dict[str, types.ModuleType] = {}  # extension name -> module imported by get_plugin.
_BUILD_DONE_MARKER = "build-complete"
_BUILD_RECIPE = "v1"  # Part of the cache key: change it when `_build` changes how plugins are compiled.

# ----------------------------------------------------------------------------
# Choosing the implementation.


def _requested_mode(op_name: str, requested: str | None) -> str:
    """The mode asked for: an explicit `impl` wins, otherwise SPINEGAN_OPS_IMPL (default 'auto')."""
    if requested is not None and requested != "auto":
        if requested not in IMPL_CHOICES:
            raise ValueError(f"{op_name}: impl={requested!r} is not one of {', '.join(IMPL_CHOICES)} (or None)")
        return requested
    mode = os.environ.get(IMPL_ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in IMPL_CHOICES:
        raise dnnlib.UserError(f"{IMPL_ENV_VAR}={os.environ[IMPL_ENV_VAR]!r} is not one of {', '.join(IMPL_CHOICES)}")
    return mode


def check_env() -> None:
    """Raises dnnlib.UserError (a ValueError) when $SPINEGAN_OPS_IMPL is set to no known choice: for tools to call
    before they create any output, since the ops read it only at their first call."""
    _requested_mode("ops", None)


def _plugin_failure(op_name: str, kind: str = "cuda") -> str | None:
    """Loads the op's CUDA plugin or CPU kernel (`kind`) once per process; None on success, else why it failed."""
    key = (op_name, kind)
    modules = _PLUGIN_MODULES if kind == "cuda" else _CPU_PLUGIN_MODULES
    if key not in _plugin_status:
        if op_name not in modules:
            _plugin_status[key] = f"no {kind} implementation exists for op {op_name!r}"
        else:
            try:
                _op_plugins[key] = importlib.import_module(modules[op_name]).load_plugin()
                _plugin_status[key] = None
            except Exception as exc:  # Any build/import failure becomes a reason, reported by the caller.
                what = "plugin" if kind == "cuda" else "CPU kernel"
                _plugin_status[key] = f"{what} build/load failed: {type(exc).__name__}: {exc}"
    return _plugin_status[key]


def _cuda_unavailable_reason(op_name: str, tensor: torch.Tensor) -> str | None:
    """Why the CUDA plugin cannot run on this tensor, or None when it can."""
    if tensor.device.type != "cuda":
        return f"tensor is on {tensor.device.type}, not on a CUDA device"
    if not torch.cuda.is_available():
        return "torch reports no usable CUDA device"
    return _plugin_failure(op_name)


def _unavailable_reason(op_name: str, kind: str, tensor: torch.Tensor) -> str | None:
    """Why the op's `kind` ('cuda' or 'cpu') implementation cannot run on this tensor, or None when it can."""
    if kind == "cuda":
        return _cuda_unavailable_reason(op_name, tensor)
    if tensor.device.type != "cpu":
        return f"tensor is on {tensor.device.type}, not on the CPU"
    return _plugin_failure(op_name, "cpu")


def _log_once(op_name: str, key: str, describe: Callable[[], str], level: int = logging.INFO) -> None:
    """Logs `describe()` the first time (op_name, key) is seen; resolve_impl runs on every op call."""
    if (op_name, key) not in _logged:
        _logged.add((op_name, key))
        logger.log(level, "%s: %s", op_name, describe())


@contextlib.contextmanager
def choices_logged_to(stream: TextIO) -> Iterator[None]:
    """Within the block, write the ops' choice of implementation (one INFO line per op, warnings too) to `stream`.

    Long jobs use this so that their log says whether the CUDA plugins or the reference paths run; the
    library itself only logs, and leaves handlers to the program. Inside the block the lines do not also
    propagate to the root logger, which some imported packages (opacus) configure: they would show twice.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved


def _describe_plugin(op_name: str, kind: str, tensor: torch.Tensor) -> str:
    path = getattr(_op_plugins.get((op_name, kind)), "__file__", None)
    where = os.path.dirname(path) if path else "unknown"
    if kind == "cpu":
        return f"using CPU kernel (built for this CPU, cached at {where})"
    major, minor = torch.cuda.get_device_capability(tensor.device)
    return f"using CUDA plugin (sm_{major}{minor}, cached at {where})"


def resolve_impl(op_name: str, requested: str | None, tensor: torch.Tensor) -> str:
    """Returns 'cuda', 'cpu' or 'ref': which implementation `op_name` should use for `tensor`.

    `requested` is None/'auto', 'ref', 'cuda' or 'cpu'; None/'auto' defer to $SPINEGAN_OPS_IMPL.
    'auto' uses the CUDA plugin for a CUDA tensor and the CPU kernel for a CPU tensor when the op has one that
    builds and loads, and logs why not otherwise. A forced 'cuda' or 'cpu' that cannot be met raises
    RuntimeError naming the reason; 'cpu' for an op without a CPU kernel is its reference path.
    """
    mode = _requested_mode(op_name, requested)
    if mode == "ref":
        _log_once(op_name, "ref", lambda: "using reference path (requested)")
        return "ref"
    kind = mode if mode != "auto" else ("cuda" if tensor.device.type == "cuda" else "cpu")
    if kind == "cpu" and tensor.device.type == "cpu" and op_name not in _CPU_PLUGIN_MODULES:
        # The reference path is this op's only CPU implementation, so 'cpu' asks for nothing else.
        reason = f"no CPU kernel exists for op {op_name!r}"
        _log_once(op_name, "ref: " + reason, lambda: f"using reference path ({reason})")
        return "ref"
    reason = _unavailable_reason(op_name, kind, tensor)
    if reason is None:
        _log_once(op_name, kind, lambda: _describe_plugin(op_name, kind, tensor))
        return kind
    if mode != "auto":
        raise RuntimeError(f"{op_name}: impl={mode!r} was requested but cannot be used: {reason}")
    # A CUDA tensor that falls back is a real slowdown: say so loudly.
    level = logging.WARNING if tensor.device.type == "cuda" else logging.INFO
    _log_once(op_name, "ref: " + reason, lambda: f"using reference path ({reason})", level)
    return "ref"


# ----------------------------------------------------------------------------
# Building plugins.


class BuildToolsMissing(RuntimeError):
    """No CUDA build of torch, no nvcc or no ninja: plugins cannot be built on this machine at all."""


def find_cuda_home() -> str:
    """The CUDA toolkit root: $CUDA_HOME/$CUDA_PATH, else a directory holding bin/nvcc and the headers.

    torch guesses CUDA_HOME from `which nvcc`, which is wrong when nvcc is a wrapper script
    (e.g. /usr/local/bin/nvcc -> /usr/local), so we check the headers are really there.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc is not None:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += sorted(glob.glob("/usr/local/cuda*"))
    for home in candidates:
        if (
            home
            and os.path.isfile(os.path.join(home, "bin", "nvcc"))
            and os.path.isfile(os.path.join(home, "include", "cuda_runtime.h"))
        ):
            return home
    raise BuildToolsMissing(
        "nvcc (the CUDA compiler) was not found: install the CUDA toolkit matching "
        f"torch.version.cuda={torch.version.cuda} or set CUDA_HOME to its root"
    )


def nvcc_version(home: str) -> str:
    """The toolkit release of `home`/bin/nvcc, e.g. '13.0'."""
    out = subprocess.run(
        [os.path.join(home, "bin", "nvcc"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"release (\d+\.\d+)", out)
    if match is None:
        raise RuntimeError(f"could not read the release from `{home}/bin/nvcc --version`: {out.strip()!r}")
    return match.group(1)


def check_build_tools() -> str:
    """Returns the CUDA root; BuildToolsMissing without nvcc/ninja, RuntimeError when nvcc mismatches torch."""
    if torch.version.cuda is None:
        raise BuildToolsMissing(f"torch {torch.__version__} was built without CUDA; install a CUDA build of torch")
    home = find_cuda_home()
    toolkit = nvcc_version(home)
    if toolkit.split(".")[0] != torch.version.cuda.split(".")[0]:
        major = torch.version.cuda.split(".")[0]
        raise RuntimeError(
            f"nvcc {toolkit} at {home} cannot build for torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}): "
            f"the major versions must match; install CUDA {major}.x (or the nvidia-cuda-nvcc-cu{major} "
            f"wheel) and point CUDA_HOME at it"
        )
    os.environ.setdefault("CUDA_HOME", home)  # Read when cpp_extension is first imported.
    from torch.utils import cpp_extension

    cpp_extension.CUDA_HOME = home  # Make torch use the toolkit we checked, not its own guess.
    if not cpp_extension.is_ninja_available():
        raise BuildToolsMissing("ninja was not found: `pip install ninja` (it builds our CUDA plugins)")
    return home


def cuda_arch_list() -> list[str]:
    """Architectures to compile for: $TORCH_CUDA_ARCH_LIST, else those of the visible GPUs."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if env:
        return sorted(set(env.replace(",", ";").replace(" ", ";").split(";")) - {""})
    if torch.cuda.is_available():
        caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        return sorted(f"{major}.{minor}" for major, minor in caps)
    raise RuntimeError(
        "no GPU is visible and TORCH_CUDA_ARCH_LIST is unset: "
        'set it (e.g. "8.0;9.0") to say which architectures to build for'
    )


def _arch_tag(arch_list: Sequence[str]) -> str:
    return "-".join("sm_" + arch.replace(".", "").replace("+PTX", "ptx") for arch in arch_list)


def nvidia_wheel_include_dirs() -> list[str]:
    """Header folders of the nvidia-* pip wheels (cuSPARSE, cuBLAS, ...) that torch's headers include."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(
        path for root in spec.submodule_search_locations for path in glob.glob(os.path.join(root, "*", "include"))
    )


def source_hash(paths: Sequence[str], extra: str = "") -> str:
    """A digest of the files' names and contents plus `extra` (build options, torch version)."""
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as file:
            digest.update(file.read())
    return digest.hexdigest()[:16]


def plugin_cache_dir(
    module_name: str,
    sources: Sequence[str],
    headers: Sequence[str] = (),
    arch_list: Sequence[str] | None = None,
    build_kwargs: dict | None = None,
    tag: str | None = None,
) -> str:
    """Where a plugin builds: <TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions>/spinegan/<name>-<hash>-<tag>, the
    tag naming the GPU architectures (`arch_list`, default those of the visible GPUs) or, given, the CPU."""
    if tag is None:
        tag = _arch_tag(cuda_arch_list() if arch_list is None else list(arch_list))
    extra = f"{_BUILD_RECIPE}|{torch.__version__}|{torch.version.cuda}|{sorted((build_kwargs or {}).items())!r}"
    key = source_hash(list(sources) + list(headers), extra)
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "torch_extensions")
    return os.path.join(root, "spinegan", f"{module_name}-{key}-{tag}")


def _complete_build_covering(build_dir: str, arch_list: Sequence[str]) -> str | None:
    """A finished build of the same sources whose architectures include all of `arch_list`, if any.

    Lets a GPU run reuse what `tools/check_cuda_build.py` compiled for "8.0;9.0" without a GPU.
    """
    prefix = build_dir[: -len(_arch_tag(arch_list))]
    wanted = set(_arch_tag(arch_list).split("-"))
    for candidate in sorted(glob.glob(glob.escape(prefix) + "sm_*")):
        built = set(candidate[len(prefix) :].split("-"))
        if wanted <= built and os.path.exists(os.path.join(candidate, _BUILD_DONE_MARKER)):
            return candidate
    return None


@contextlib.contextmanager
def _exclusive_lock(path: str) -> Iterator[None]:
    """An flock on `path`: the kernel releases it when a process dies, so it never goes stale."""
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def _populate_atomically(build_dir: str, files: Sequence[str]) -> None:
    """Copies the sources into `build_dir`, which appears complete or not at all."""
    if os.path.isdir(build_dir):
        return
    parent = os.path.dirname(build_dir)
    tmp_dir = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(build_dir) + "-")
    for path in files:
        shutil.copyfile(path, os.path.join(tmp_dir, os.path.basename(path)))
    try:
        os.replace(tmp_dir, build_dir)
    except OSError:  # Another process got there first; its copy is identical.
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _import_built(module_name: str, build_dir: str) -> types.ModuleType:
    """Imports the compiled extension from `build_dir` without invoking ninja again."""
    path = os.path.join(build_dir, module_name + ".so")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise RuntimeError(f"{module_name}: no built extension at {path}; delete {build_dir} to rebuild")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(
    module_name: str, build_dir: str, sources: Sequence[str], arch_list: Sequence[str], build_kwargs: dict
) -> types.ModuleType:
    """Runs the ninja build of a CUDA plugin in `build_dir` (caller holds the lock)."""
    from torch.utils import cpp_extension

    _remove_stale_torch_lock(build_dir)
    # The wheels' headers come last (-isystem after the toolkit's): they only fill in what the toolkit lacks.
    wheel_includes = [flag for path in nvidia_wheel_include_dirs() for flag in ("-isystem", path)]
    kwargs = dict(build_kwargs)
    kwargs["extra_cflags"] = list(kwargs.get("extra_cflags", [])) + wheel_includes
    kwargs["extra_cuda_cflags"] = list(kwargs.get("extra_cuda_cflags", [])) + wheel_includes
    saved_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(arch_list)
    try:
        module = cpp_extension.load(
            name=module_name,
            build_directory=build_dir,
            verbose=False,
            sources=[os.path.join(build_dir, os.path.basename(s)) for s in sources],
            **kwargs,
        )
    finally:
        if saved_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = saved_arch
    return module


def _remove_stale_torch_lock(build_dir: str) -> None:
    stale_torch_lock = os.path.join(build_dir, "lock")  # Left by a killed torch build; we hold the real lock.
    if os.path.exists(stale_torch_lock):
        os.remove(stale_torch_lock)


def _import_or_build(
    module_name: str, build_dir: str, files: Sequence[str], build: Callable[[], types.ModuleType]
) -> types.ModuleType:
    """Imports the finished build in `build_dir`, or runs `build` there and marks it complete, under the lock:
    one process builds, the others wait, then import."""
    os.makedirs(os.path.dirname(build_dir), exist_ok=True)
    with _exclusive_lock(build_dir + ".lock"):
        _populate_atomically(build_dir, files)
        if os.path.exists(os.path.join(build_dir, _BUILD_DONE_MARKER)):
            return _import_built(module_name, build_dir)
        start = time.time()
        module = build()
        with dnnlib.atomic_write(os.path.join(build_dir, _BUILD_DONE_MARKER), "w") as file:
            file.write(f"built {time.strftime('%Y-%m-%d %H:%M:%S')} as {os.path.basename(build_dir)}\n")
        logger.info("%s: built in %.1f s at %s", module_name, time.time() - start, build_dir)
        return module


def get_plugin(
    module_name: str, sources: Sequence[str], headers: Sequence[str] | None = None, **build_kwargs
) -> types.ModuleType:
    """Builds (once per machine) and imports the CUDA extension `module_name`.

    `sources` and `headers` are file paths; every other keyword goes to
    `torch.utils.cpp_extension.load`. Safe to call from several processes at once.
    """
    if module_name in _loaded_plugins:
        return _loaded_plugins[module_name]
    headers = list(headers or [])
    check_build_tools()
    arch_list = cuda_arch_list()
    build_dir = plugin_cache_dir(module_name, sources, headers, arch_list, build_kwargs)
    existing = _complete_build_covering(build_dir, arch_list)
    if existing is not None:
        module = _import_built(module_name, existing)
    else:
        build = lambda: _build(module_name, build_dir, sources, arch_list, build_kwargs)  # noqa: E731
        module = _import_or_build(module_name, build_dir, list(sources) + headers, build)
    _loaded_plugins[module_name] = module
    return module


# Compiled for the CPU it runs on, so that the compiler vectorises with every instruction the CPU has; the build's
# folder is keyed by the CPU (`cpu_tag`), so a home folder shared by several machines keeps one build per CPU.
CPU_BUILD_FLAGS = ("-O3", "-march=native", "-mprefer-vector-width=512")  # 512: gcc's default on Intel is 256


def cpu_tag() -> str:
    """'cpu_' and a digest of this CPU's model name and instruction-set flags (/proc/cpuinfo where there is one)."""
    identity = platform.machine() + "|" + platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            identity += "|".join(
                sorted({line for line in file.read().splitlines() if line.startswith(("model name", "flags"))})
            )
    except OSError:
        pass
    return "cpu_" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def _build_cpu(module_name: str, build_dir: str, sources: Sequence[str], build_kwargs: dict) -> types.ModuleType:
    """Runs the ninja build of a CPU extension in `build_dir` (caller holds the lock)."""
    from torch.utils import cpp_extension

    _remove_stale_torch_lock(build_dir)
    return cpp_extension.load(
        name=module_name,
        build_directory=build_dir,
        verbose=False,
        with_cuda=False,
        sources=[os.path.join(build_dir, os.path.basename(s)) for s in sources],
        **build_kwargs,
    )


def get_cpu_plugin(module_name: str, sources: Sequence[str]) -> types.ModuleType:
    """Builds (once per machine and CPU) and imports the CPU extension `module_name`, compiled with
    CPU_BUILD_FLAGS. BuildToolsMissing without ninja; a compiler error propagates. Safe from several processes."""
    if module_name in _loaded_plugins:
        return _loaded_plugins[module_name]
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        raise BuildToolsMissing("ninja was not found: `pip install ninja` (it builds our CPU kernels)")
    build_kwargs = dict(extra_cflags=list(CPU_BUILD_FLAGS))
    build_dir = plugin_cache_dir(module_name, sources, build_kwargs=build_kwargs, tag=cpu_tag())
    build = lambda: _build_cpu(module_name, build_dir, sources, build_kwargs)  # noqa: E731
    module = _import_or_build(module_name, build_dir, list(sources), build)
    _loaded_plugins[module_name] = module
    return module


def reset_state() -> None:
    """Forgets resolved implementations and log lines (for tests and after changing the environment)."""
    _plugin_status.clear()
    _op_plugins.clear()
    _logged.clear()
