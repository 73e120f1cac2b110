"""Network snapshots: our own format, and official StyleGAN2-ADA pickles read without running their code.

Our format (`spinegan-snapshot-v1`) is a `torch.save` of plain data only (a training checkpoint,
`training.checkpoint`, reads as a snapshot of its networks too),
    {format, nets: {name: {class_name, init_kwargs, state_dict}}, training_set_kwargs, metadata},
so it is read back with `torch.load(weights_only=True)` and the networks are rebuilt from their constructor
arguments. Only classes listed in `_SNAPSHOT_CLASSES` can be named.

Official `network-snapshot-*.pkl` files embed the source code of their modules and `exec` it on load
(facts sheet section 8). `_OfficialUnpickler` instead resolves the persistence hook to a recorder
(`PersistentRecord`), allows the few globals those files really need and refuses every other one, then the
networks are rebuilt from the recorded `init_kwargs` and their tensors copied by state_dict name.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
import warnings
from typing import IO, Any, Callable

import numpy as np
import torch
import torch._utils

import dnnlib
from training.checkpoint import FORMAT as CHECKPOINT_FORMAT

FORMAT = 'spinegan-snapshot-v1'
NET_NAMES = ('G', 'D', 'G_ema', 'augment_pipe')

# Classes a snapshot may name: (module, attribute). Nothing else is ever imported on load.
_SNAPSHOT_CLASSES = {
    'training.networks.Generator': ('training.networks', 'Generator'),
    'training.networks.Discriminator': ('training.networks', 'Discriminator'),
    'training.augment.AugmentPipe': ('training.augment', 'AugmentPipe'),
}
# A checkpoint's networks are named by role, not class.
_CHECKPOINT_CLASSES = {
    'G': 'training.networks.Generator',
    'G_ema': 'training.networks.Generator',
    'D': 'training.networks.Discriminator',
    'augment_pipe': 'training.augment.AugmentPipe',
}
# Official persistent classes (bare class names as recorded by torch_utils.persistence) -> ours.
_OFFICIAL_CLASSES = {
    'Generator': 'training.networks.Generator',
    'Discriminator': 'training.networks.Discriminator',
    'AugmentPipe': 'training.augment.AugmentPipe',
}
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTO = 0x80


# ----------------------------------------------------------------------------------------------------------
# Writing


def save_network_snapshot(path: str | os.PathLike, *, G: torch.nn.Module | None, D: torch.nn.Module | None,
                          G_ema: torch.nn.Module | None, augment_pipe: torch.nn.Module | None = None,
                          training_set_kwargs: dict | None = None, metadata: dict | None = None) -> None:
    """Write the networks (those that are not None) in our format, atomically."""
    nets = {}
    for name, module in zip(NET_NAMES, (G, D, G_ema, augment_pipe)):
        if module is not None:
            nets[name] = _net_record(module, name)
    data = dict(format=FORMAT, nets=nets,
                training_set_kwargs=_plain(training_set_kwargs, 'training_set_kwargs'),
                metadata=_plain(metadata, 'metadata'))
    with dnnlib.atomic_write(path, 'wb') as f:
        torch.save(data, f)


def _net_record(module: torch.nn.Module, name: str) -> dict:
    class_name = f'{type(module).__module__}.{type(module).__qualname__}'
    if class_name not in _SNAPSHOT_CLASSES:
        raise TypeError(f'save_network_snapshot: {name} is a {class_name}; a snapshot can hold only '
                        f'{sorted(_SNAPSHOT_CLASSES)}')
    if not isinstance(getattr(module, 'init_kwargs', None), dict):
        raise TypeError(f'save_network_snapshot: {name} ({class_name}) has no init_kwargs dict to rebuild it from')
    state_dict = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    return dict(class_name=class_name, init_kwargs=_plain(module.init_kwargs, f'{name}.init_kwargs'),
                state_dict=state_dict)


def _plain(obj: Any, where: str) -> Any:
    """Copy of `obj` made of dict/list/tuple/str/int/float/bool/None only (what weights_only can read)."""
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                raise TypeError(f'{where}: keys must be strings, got {key!r}')
        return {key: _plain(value, f'{where}.{key}') for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [_plain(value, f'{where}[{i}]') for i, value in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f'{where}: cannot store a {type(obj).__name__} in a snapshot; use plain data '
                    f'(dict, list, str, numbers, bool, None)')


# ----------------------------------------------------------------------------------------------------------
# Reading


def load_network_pkl(path_or_file: str | os.PathLike | IO[bytes]) -> dict:
    """Read our snapshot, our training checkpoint or an official StyleGAN2-ADA pickle, without executing code
    from the file.

    Returns dict(G, D, G_ema, augment_pipe, training_set_kwargs, metadata); absent entries are None.
    Networks come back on the CPU, in eval mode, without gradients.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, 'rb') as f:
            return _load_from_stream(f, os.fspath(path_or_file))
    return _load_from_stream(path_or_file, getattr(path_or_file, 'name', '<file object>'))


def load_generator(url_or_path: str | os.PathLike, device: torch.device | str = 'cpu') -> torch.nn.Module:
    """G_ema of a snapshot (path or URL, see `dnnlib.open_url`) on `device`."""
    with dnnlib.open_url(os.fspath(url_or_path)) as f:
        G_ema = load_network_pkl(f)['G_ema']
    if G_ema is None:
        raise ValueError(f'{url_or_path}: the snapshot holds no G_ema')
    return G_ema.to(device)


def _load_from_stream(f: IO[bytes], source: str) -> dict:
    data = f.read()
    if data.startswith(_ZIP_MAGIC):
        return _load_our_snapshot(data, source)
    if data[:1] == bytes([_PICKLE_PROTO]):
        return _load_official_pickle(data, source)
    raise ValueError(f'{source}: neither a {FORMAT} file nor a StyleGAN2-ADA network pickle')


def _load_our_snapshot(data: bytes, source: str) -> dict:
    snapshot = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    if isinstance(snapshot, dict) and snapshot.get('format') == CHECKPOINT_FORMAT:
        snapshot = _checkpoint_as_snapshot(snapshot)
    if not isinstance(snapshot, dict) or snapshot.get('format') != FORMAT:
        found = snapshot.get('format') if isinstance(snapshot, dict) else type(snapshot).__name__
        raise ValueError(f'{source}: expected format {FORMAT!r}, found {found!r}')
    result = _empty_result(snapshot.get('training_set_kwargs'), snapshot.get('metadata'))
    for name, record in snapshot['nets'].items():
        if name not in NET_NAMES:
            raise ValueError(f'{source}: unknown network {name!r}; expected one of {NET_NAMES}')
        where = f'{source}: {name}'
        module = _build_module(record['class_name'], (), record['init_kwargs'], where)
        result[name] = _finish(_copy_tensors(module, record['state_dict'], where))
    return result


def _checkpoint_as_snapshot(checkpoint: dict) -> dict:
    """The networks of a training checkpoint (training.checkpoint) in snapshot form, so checkpoint.pt loads too."""
    nets = {name: dict(entry, class_name=_CHECKPOINT_CLASSES[name])
            for name, entry in checkpoint['nets'].items() if entry is not None}
    return dict(format=FORMAT, nets=nets, training_set_kwargs=checkpoint.get('training_set_kwargs'),
                metadata=dict(cur_nimg=checkpoint['progress']['cur_nimg']))


def _empty_result(training_set_kwargs: dict | None, metadata: dict | None) -> dict:
    def easy(d: dict | None) -> dnnlib.EasyDict | None:
        return dnnlib.EasyDict(d) if d is not None else None
    return dict(G=None, D=None, G_ema=None, augment_pipe=None, training_set_kwargs=easy(training_set_kwargs),
                metadata=easy(metadata))


def _build_module(class_name: str, init_args: tuple, init_kwargs: dict, where: str) -> torch.nn.Module | None:
    """Our module for `class_name`, constructed without disturbing the global RNG (init weights are overwritten).

    Returns None (with a warning) for AugmentPipe while `training.augment` is not available.
    """
    if class_name not in _SNAPSHOT_CLASSES:
        raise ValueError(f'{where}: class {class_name!r} is not one this loader builds ({sorted(_SNAPSHOT_CLASSES)})')
    module_name, attr = _SNAPSHOT_CLASSES[class_name]
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        if attr != 'AugmentPipe':
            raise
        warnings.warn(f'{where}: {module_name}.{attr} is not available ({err}); augment_pipe is left as None')
        return None
    with torch.random.fork_rng(devices=[]):
        try:
            return cls(*init_args, **init_kwargs)
        except TypeError as err:
            raise ValueError(f'{where}: cannot build {class_name} from its init_kwargs {dict(init_kwargs)}: {err}')


def _copy_tensors(module: torch.nn.Module | None, tensors: dict[str, torch.Tensor],
                  where: str) -> torch.nn.Module | None:
    """Copy every parameter and buffer of `module` from `tensors` by state_dict name; names and shapes must match."""
    if module is None:
        return None
    own = module.state_dict()
    missing = [key for key in own if key not in tensors]
    unexpected = [key for key in tensors if key not in own]
    if missing or unexpected:
        raise ValueError(f'{where}: state_dict names do not match the rebuilt {type(module).__name__}: '
                         f'missing {missing[:8]}{"..." if len(missing) > 8 else ""}, '
                         f'unexpected {unexpected[:8]}{"..." if len(unexpected) > 8 else ""}')
    for key, dst in own.items():
        src = tensors[key]
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f'{where}: {key} has shape {list(src.shape)} in the file but '
                             f'{list(dst.shape)} in the rebuilt network')
    module.load_state_dict({key: tensors[key] for key in own}, strict=True)
    return module


def _finish(module: torch.nn.Module | None) -> torch.nn.Module | None:
    return module.eval().requires_grad_(False) if module is not None else None


# ----------------------------------------------------------------------------------------------------------
# Official pickles


class PersistentRecord:
    """What an official persistent object pickles: its class name and instance state (never its source)."""

    def __init__(self, class_name: str, state: dict):
        self.class_name = class_name
        self.state = state

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get('_init_args', ()))

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get('_init_kwargs', {}))

    def tensors(self, prefix: str = '') -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers by state_dict name, recursing through child modules."""
        out = {}
        skipped = set(self.state.get('_non_persistent_buffers_set', ()))
        for group in ('_parameters', '_buffers'):
            for name, value in (self.state.get(group) or {}).items():
                if value is not None and name not in skipped:
                    out[prefix + name] = value
        for name, child in (self.state.get('_modules') or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise ValueError(f'{prefix}{name}: child module is a {type(child).__name__}, not a persistent module')
            out.update(child.tensors(f'{prefix}{name}.'))
        return out


def _record_persistent_obj(meta: dict) -> PersistentRecord:
    """Stands in for torch_utils.persistence._reconstruct_persistent_obj: records, never executes module_src."""
    if not isinstance(meta, dict) or meta.get('type') != 'class' or not isinstance(meta.get('state'), dict):
        raise pickle.UnpicklingError('persistent object: expected meta {type: "class", class_name, state}')
    return PersistentRecord(str(meta['class_name']), meta['state'])


def _storage_from_bytes(data: bytes) -> Any:
    """Stands in for torch.storage._load_from_bytes, reading the embedded storage with weights_only=True."""
    return torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> np.generic:
    """Stands in for numpy's scalar reconstructor; plain (non-object) dtypes only."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError(f'numpy scalar: only plain dtypes from bytes are allowed, got {dtype!r}')
    return np.frombuffer(data, dtype=dtype)[0]


def _latin1_encode(text: str, encoding: str = 'latin1') -> bytes:
    """Stands in for _codecs.encode, which protocol-2 pickles use to spell bytes objects."""
    if encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError(f'_codecs.encode: only latin1 is allowed, got {encoding!r}')
    return text.encode('latin1')


_OFFICIAL_GLOBALS: dict[tuple[str, str], Callable] = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _record_persistent_obj,
    ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): torch._utils._rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
    ('numpy', 'dtype'): np.dtype,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('builtins', 'set'): set,
    ('__builtin__', 'set'): set,  # protocol-2 spelling
    ('_codecs', 'encode'): _latin1_encode,
}


class _OfficialUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_OFFICIAL_GLOBALS` and refuses every other global by name."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _OFFICIAL_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f'refusing to load global {module}.{name}: official network pickles need only '
                f'{sorted(".".join(key) for key in _OFFICIAL_GLOBALS)}') from None


def _load_official_pickle(data: bytes, source: str) -> dict:
    try:
        content = _OfficialUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise ValueError(f'{source}: {err}') from None
    if not isinstance(content, dict):
        raise ValueError(f'{source}: expected a dict of networks (StyleGAN2-ADA snapshot), '
                         f'got {type(content).__name__}')
    training_set_kwargs = content.get('training_set_kwargs')
    result = _empty_result(dict(training_set_kwargs) if training_set_kwargs is not None else None,
                           dict(format='stylegan2-ada-pytorch-pickle'))
    for name in NET_NAMES:
        record = content.get(name)
        if record is None:
            continue
        where = f'{source}: {name}'
        if not isinstance(record, PersistentRecord) or record.class_name not in _OFFICIAL_CLASSES:
            found = record.class_name if isinstance(record, PersistentRecord) else type(record).__name__
            raise ValueError(f'{where}: expected one of {sorted(_OFFICIAL_CLASSES)}, got {found}')
        module = _build_module(_OFFICIAL_CLASSES[record.class_name], record.init_args, record.init_kwargs, where)
        result[name] = _finish(_copy_tensors(module, record.tensors(), where))
    return result
