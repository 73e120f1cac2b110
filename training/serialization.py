"""Network snapshots: our own format, and official StyleGAN2-ADA pickles read without running their code.

Our format (`spinegan-snapshot-v1`) is a `torch.save` of plain data only (a training checkpoint,
`training.checkpoint`, reads as a snapshot of its networks too),
    {format, nets: {name: {class_name, init_kwargs, state_dict}}, training_set_kwargs, metadata},
so it is read back with `torch.load(weights_only=True)` and the networks are rebuilt from their constructor
arguments. Only classes listed in `_SNAPSHOT_CLASSES` can be named.

Official `network-snapshot-*.pkl` files embed the source code of their modules and `exec` it on load
(the official `persistence` module). `_OfficialUnpickler` instead resolves the persistence hook to a recorder
(`PersistentRecord`), allows the few globals those files really need and refuses every other one, then the
networks are rebuilt from the recorded `init_kwargs` and their tensors copied by state_dict name.

`load_weights_only` is the one reader of our plain-data `torch.save` files (snapshots, checkpoints,
classifier.pkl). Every refusal is a `dnnlib.UserError` that names the file and says what was refused (code, a
foreign global, an unknown class); none suggests loading the file unsafely.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
import re
import warnings
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import torch
import torch._utils

import dnnlib

# The format tag of training.checkpoint's checkpoint.pt (defined here, below it: the loader reads checkpoints too).
CHECKPOINT_FORMAT = "spinegan-checkpoint-v1"

FORMAT = "spinegan-snapshot-v1"
NET_NAMES = ("G", "D", "G_ema", "augment_pipe")

# Classes a snapshot may name: (module, attribute). Nothing else is ever imported on load.
_SNAPSHOT_CLASSES = {
    "training.networks.Generator": ("training.networks", "Generator"),
    "training.networks.Discriminator": ("training.networks", "Discriminator"),
    "training.augment.AugmentPipe": ("training.augment", "AugmentPipe"),
}
# A checkpoint's networks are named by role, not class.
_CHECKPOINT_CLASSES = {
    "G": "training.networks.Generator",
    "G_ema": "training.networks.Generator",
    "D": "training.networks.Discriminator",
    "augment_pipe": "training.augment.AugmentPipe",
}
# Official persistent classes (bare class names as recorded by torch_utils.persistence) -> ours.
_OFFICIAL_CLASSES = {
    "Generator": "training.networks.Generator",
    "Discriminator": "training.networks.Discriminator",
    "AugmentPipe": "training.augment.AugmentPipe",
}
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


# ----------------------------------------------------------------------------------------------------------
# Writing


def save_network_snapshot(
    path: str | os.PathLike,
    *,
    G: torch.nn.Module | None,
    D: torch.nn.Module | None,
    G_ema: torch.nn.Module | None,
    augment_pipe: torch.nn.Module | None = None,
    training_set_kwargs: dict | None = None,
    metadata: dict | None = None,
) -> None:
    """Write the networks (those that are not None) in our format, atomically."""
    nets = {}
    for name, module in zip(NET_NAMES, (G, D, G_ema, augment_pipe)):
        if module is not None:
            nets[name] = _net_record(module, name)
    data = dict(
        format=FORMAT,
        nets=nets,
        training_set_kwargs=_plain(training_set_kwargs, "training_set_kwargs"),
        metadata=_plain(metadata, "metadata"),
    )
    with dnnlib.atomic_write(path, "wb") as f:
        torch.save(data, f)


def _net_record(module: torch.nn.Module, name: str) -> dict:
    class_name = f"{type(module).__module__}.{type(module).__qualname__}"
    if class_name not in _SNAPSHOT_CLASSES:
        raise TypeError(
            f"save_network_snapshot: {name} is a {class_name}; a snapshot can hold only {sorted(_SNAPSHOT_CLASSES)}"
        )
    if not isinstance(getattr(module, "init_kwargs", None), dict):
        raise TypeError(f"save_network_snapshot: {name} ({class_name}) has no init_kwargs dict to rebuild it from")
    state_dict = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    return dict(
        class_name=class_name, init_kwargs=_plain(module.init_kwargs, f"{name}.init_kwargs"), state_dict=state_dict
    )


def _plain(obj: Any, where: str) -> Any:
    """Copy of `obj` made of dict/list/tuple/str/int/float/bool/None only (what weights_only can read)."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {key!r}")
        return {key: _plain(value, f"{where}.{key}") for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_plain(value, f"{where}[{i}]") for i, value in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(
        f"{where}: cannot store a {type(obj).__name__} in a snapshot; use plain data "
        f"(dict, list, str, numbers, bool, None)"
    )


# ----------------------------------------------------------------------------------------------------------
# Reading


def load_network_pkl(source: str | os.PathLike | IO[bytes]) -> dict:
    """Read our snapshot, our training checkpoint or an official StyleGAN2-ADA pickle (a path, a URL, or an open
    binary file), without executing code from the file.

    Returns dict(G, D, G_ema, augment_pipe, training_set_kwargs, metadata); absent entries are None.
    Networks come back on the CPU, in eval mode, without gradients. A file that is missing, unreadable or not a
    network snapshot raises `dnnlib.UserError` naming it.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            with dnnlib.open_url(name) as f:  # downloads (and caches) a URL, saying so on stderr
                data = f.read()
        except OSError as exc:  # missing, a folder, unreadable, failed download
            raise dnnlib.UserError(f"{name}: cannot read the network snapshot ({_os_reason(exc)})") from None
        return _load_from_bytes(data, name)
    return _load_from_bytes(source.read(), getattr(source, "name", "<file object>"))


def load_generator(url_or_path: str | os.PathLike, device: torch.device | str = "cpu") -> torch.nn.Module:
    """G_ema of a snapshot (path or URL, see `dnnlib.open_url`) on `device`."""
    G_ema = load_network_pkl(url_or_path)["G_ema"]
    if G_ema is None:
        raise dnnlib.UserError(f"{url_or_path}: the snapshot holds no G_ema (the generator to sample from)")
    return G_ema.to(device)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return exc.strerror.lower() if exc.strerror else str(exc)


def _load_from_bytes(data: bytes, source: str) -> dict:
    if data.startswith(_ZIP_MAGIC):
        return _load_our_snapshot(data, source)
    if data[:1] == bytes([_PICKLE_PROTO]):
        return _load_official_pickle(data, source)
    raise dnnlib.UserError(
        f"{source}: not a network snapshot: expected a {FORMAT} file (a torch.save zip) or a "
        f"StyleGAN2-ADA network pickle, found {_describe_start(data)}"
    )


def _describe_start(data: bytes) -> str:
    if not data:
        return "an empty file"
    return f"a file starting with {data[:8]!r}"


# ----------------------------------------------------------------------------------------------------------
# Plain-data torch.save files


def load_weights_only(source: str | os.PathLike | bytes, name: str, expected: str) -> Any:
    """`torch.load(weights_only=True)` of a file (path or its bytes) that should be `expected` (e.g. 'a SpineGAN
    checkpoint'): tensors and plain data only, on the CPU.

    Anything else raises `dnnlib.UserError` naming `name` and what was found: a raw pickle is not unpickled at all,
    a Python global in the file (a class or function: code) is refused by its name, a damaged archive is called
    so. torch's own message is not passed on: it suggests loading with weights_only=False, which would run the
    file's code.
    """
    if isinstance(source, bytes):
        start = source[: len(_ZIP_MAGIC)]
    else:
        try:
            with open(source, "rb") as f:
                start = f.read(len(_ZIP_MAGIC))
        except OSError as exc:
            raise dnnlib.UserError(f"{name}: cannot read {expected} ({_os_reason(exc)})") from None
    if start != _ZIP_MAGIC:
        found = (
            "a raw Python pickle, which is never unpickled here (it could run code)"
            if start[:1] == bytes([_PICKLE_PROTO])
            else _describe_start(start)
        )
        raise dnnlib.UserError(f"{name}: not {expected}: expected a torch.save zip archive, found {found}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on pickle protocols
            return torch.load(
                io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu", weights_only=True
            )
    except pickle.UnpicklingError as exc:
        raise dnnlib.UserError(
            f"{name}: refusing to load it as {expected}: {_refused_content(str(exc))}; "
            f"{expected} holds only tensors and plain data"
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError) as exc:  # what torch raises for a damaged archive
        reason = str(exc).split(". ")[0].strip() or type(exc).__name__
        raise dnnlib.UserError(f"{name}: not a readable torch.save archive, truncated or damaged ({reason})") from None


def _refused_content(torch_message: str) -> str:
    """What torch's weights-only unpickler refused, in our words (its message advises unsafe loading)."""
    match = re.search(r"GLOBAL ([\w.]+)", torch_message)
    if match:
        return f"it names the Python global {match.group(1)} (a class or function: code that loading would run)"
    return "it holds pickled objects other than tensors and plain data"


def _load_our_snapshot(data: bytes, source: str) -> dict:
    snapshot = load_weights_only(data, source, f"a {FORMAT} network snapshot")
    if isinstance(snapshot, dict) and snapshot.get("format") == CHECKPOINT_FORMAT:
        snapshot = _checkpoint_as_snapshot(snapshot)
    if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT:
        found = snapshot.get("format") if isinstance(snapshot, dict) else type(snapshot).__name__
        raise dnnlib.UserError(f"{source}: not a network snapshot: expected format {FORMAT!r}, found {found!r}")
    if not isinstance(snapshot.get("nets"), dict):
        raise dnnlib.UserError(f"{source}: the snapshot has no dict of networks ('nets')")
    result = _empty_result(snapshot.get("training_set_kwargs"), snapshot.get("metadata"))
    for name, record in snapshot["nets"].items():
        if name not in NET_NAMES:
            raise dnnlib.UserError(f"{source}: unknown network {name!r}; expected one of {NET_NAMES}")
        where = f"{source}: {name}"
        if not isinstance(record, dict) or not {"class_name", "init_kwargs", "state_dict"} <= set(record):
            raise dnnlib.UserError(f"{where}: expected a record {{class_name, init_kwargs, state_dict}}")
        module = _build_module(record["class_name"], (), record["init_kwargs"], where)
        result[name] = _finish(_copy_tensors(module, record["state_dict"], where))
    return result


def _checkpoint_as_snapshot(checkpoint: dict) -> dict:
    """The networks of a training checkpoint (training.checkpoint) in snapshot form, so checkpoint.pt loads too."""
    nets = {
        name: dict(entry, class_name=_CHECKPOINT_CLASSES[name])
        for name, entry in checkpoint["nets"].items()
        if entry is not None
    }
    return dict(
        format=FORMAT,
        nets=nets,
        training_set_kwargs=checkpoint.get("training_set_kwargs"),
        metadata=dict(cur_nimg=checkpoint["progress"]["cur_nimg"]),
    )


def _empty_result(training_set_kwargs: dict | None, metadata: dict | None) -> dict:
    def easy(d: dict | None) -> dnnlib.EasyDict | None:
        return dnnlib.EasyDict(d) if d is not None else None

    return dict(
        G=None,
        D=None,
        G_ema=None,
        augment_pipe=None,
        training_set_kwargs=easy(training_set_kwargs),
        metadata=easy(metadata),
    )


def _build_module(class_name: str, init_args: tuple, init_kwargs: dict, where: str) -> torch.nn.Module | None:
    """Our module for `class_name`, constructed without disturbing the global RNG (init weights are overwritten).

    Returns None (with a warning) for AugmentPipe while `training.augment` is not available.
    """
    if class_name not in _SNAPSHOT_CLASSES:
        raise dnnlib.UserError(
            f"{where}: refusing class {class_name!r}: this loader builds only {sorted(_SNAPSHOT_CLASSES)}"
        )
    module_name, attr = _SNAPSHOT_CLASSES[class_name]
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        if attr != "AugmentPipe":
            raise
        warnings.warn(
            f"{where}: {module_name}.{attr} is not available ({err}); augment_pipe is left as None", stacklevel=2
        )
        return None
    with torch.random.fork_rng(devices=[]):
        try:
            return cls(*init_args, **init_kwargs)
        except (TypeError, ValueError, KeyError, AssertionError) as err:  # arguments our class does not take
            raise dnnlib.UserError(
                f"{where}: cannot build {class_name} from its init_kwargs {dict(init_kwargs)}: {err}"
            ) from None


def _copy_tensors(
    module: torch.nn.Module | None, tensors: dict[str, torch.Tensor], where: str
) -> torch.nn.Module | None:
    """Copy every parameter and buffer of `module` from `tensors` by state_dict name; names and shapes must match."""
    if module is None:
        return None
    own = module.state_dict()
    missing = [key for key in own if key not in tensors]
    unexpected = [key for key in tensors if key not in own]
    if missing or unexpected:
        raise dnnlib.UserError(
            f"{where}: state_dict names do not match the rebuilt {type(module).__name__}: "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    for key, dst in own.items():
        src = tensors[key]
        if tuple(src.shape) != tuple(dst.shape):
            raise dnnlib.UserError(
                f"{where}: {key} has shape {list(src.shape)} in the file but {list(dst.shape)} in the rebuilt network"
            )
    module.load_state_dict({key: tensors[key] for key in own}, strict=True)
    return module


def _finish(module: torch.nn.Module | None) -> torch.nn.Module | None:
    return module.eval().requires_grad_(False) if module is not None else None


# ----------------------------------------------------------------------------------------------------------
# Official pickles


class _Refusal(pickle.UnpicklingError):
    """Something in an official pickle that this loader will not load (as opposed to a damaged pickle)."""


class PersistentRecord:
    """What an official persistent object pickles: its class name and instance state (never its source)."""

    def __init__(self, class_name: str, state: dict):
        self.class_name = class_name
        self.state = state

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()))

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs", {}))

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers by state_dict name, recursing through child modules."""
        out = {}
        skipped = set(self.state.get("_non_persistent_buffers_set", ()))
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None and name not in skipped:
                    out[prefix + name] = value
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise dnnlib.UserError(
                    f"{prefix}{name}: child module is a {type(child).__name__}, not a persistent module"
                )
            out.update(child.tensors(f"{prefix}{name}."))
        return out


def _record_persistent_obj(meta: dict) -> PersistentRecord:
    """Stands in for torch_utils.persistence._reconstruct_persistent_obj: records, never executes module_src."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise _Refusal('persistent object: expected meta {type: "class", class_name, state}')
    return PersistentRecord(str(meta["class_name"]), meta["state"])


def _storage_from_bytes(data: bytes) -> Any:
    """Stands in for torch.storage._load_from_bytes, reading the embedded storage with weights_only=True.

    (The blob is torch's legacy non-zip format, so `load_weights_only` with its zip check does not apply.)
    """
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _Refusal(f"refusing an embedded tensor storage: {_refused_content(str(exc))}") from None


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> np.generic:
    """Stands in for numpy's scalar reconstructor; plain (non-object) dtypes only."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise _Refusal(f"numpy scalar: only plain dtypes from bytes are allowed, got {dtype!r}")
    return np.frombuffer(data, dtype=dtype)[0]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stands in for _codecs.encode, which protocol-2 pickles use to spell bytes objects."""
    if encoding not in ("latin1", "latin-1"):
        raise _Refusal(f"_codecs.encode: only latin1 is allowed, got {encoding!r}")
    return text.encode("latin1")


_OFFICIAL_GLOBALS: dict[tuple[str, str], Callable] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_persistent_obj,
    ("dnnlib.util", "EasyDict"): dnnlib.EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,  # protocol-2 spelling
    ("_codecs", "encode"): _latin1_encode,
}


class _OfficialUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_OFFICIAL_GLOBALS` and refuses every other global by name."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _OFFICIAL_GLOBALS[(module, name)]
        except KeyError:
            raise _Refusal(
                f"refusing to load global {module}.{name} (a class or function: code that unpickling would run); "
                f"an official network pickle names only {len(_OFFICIAL_GLOBALS)} known ones"
            ) from None


def _load_official_pickle(data: bytes, source: str) -> dict:
    try:
        content = _OfficialUnpickler(io.BytesIO(data)).load()
    except _Refusal as err:
        raise dnnlib.UserError(f"{source}: {err}") from None
    except Exception as err:  # noqa: BLE001 -- a truncated or damaged file fails anywhere in unpickling
        raise dnnlib.UserError(
            f"{source}: not a readable network pickle, truncated or damaged ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(content, dict):
        raise dnnlib.UserError(
            f"{source}: expected a dict of networks (StyleGAN2-ADA snapshot), got {type(content).__name__}"
        )
    training_set_kwargs = content.get("training_set_kwargs")
    result = _empty_result(
        dict(training_set_kwargs) if training_set_kwargs is not None else None,
        dict(format="stylegan2-ada-pytorch-pickle"),
    )
    for name in NET_NAMES:
        record = content.get(name)
        if record is None:
            continue
        where = f"{source}: {name}"
        if not isinstance(record, PersistentRecord):
            raise dnnlib.UserError(f"{where}: expected a persistent network, found a {type(record).__name__}")
        if record.class_name not in _OFFICIAL_CLASSES:
            raise dnnlib.UserError(
                f"{where}: refusing the persistent class {record.class_name!r}: this loader "
                f"rebuilds only {sorted(_OFFICIAL_CLASSES)} (code in the file is never run)"
            )
        if "_init_kwargs" not in record.state:
            raise dnnlib.UserError(
                f"{where}: refusing the persistent {record.class_name}: it records no constructor "
                f"arguments (_init_kwargs), so only the source code the file carries could "
                f"build it, and that code is never run"
            )
        module = _build_module(_OFFICIAL_CLASSES[record.class_name], record.init_args, record.init_kwargs, where)
        result[name] = _finish(_copy_tensors(module, record.tensors(), where))
    return result
