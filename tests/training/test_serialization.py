"""training.serialization: our snapshot round trip and the safe reader of official StyleGAN2-ADA pickles."""

import collections
import os
import pickle
import re
import sys
import types

import numpy as np
import pytest
import torch

import dnnlib
from training import networks, serialization


def _nets(seed=0):
    torch.manual_seed(seed)
    G = networks.Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=64, channel_max=16),
    )
    D = networks.Discriminator(
        c_dim=2,
        img_resolution=8,
        img_channels=1,
        channel_base=64,
        channel_max=16,
        mapping_kwargs=dict(num_layers=1),
        epilogue_kwargs=dict(mbstd_group_size=2),
    )
    G_ema = networks.Generator(**G.init_kwargs)
    for p in list(G.parameters()) + list(D.parameters()) + list(G_ema.buffers()):
        p.data.normal_()  # every tensor non-trivial, so a missed copy shows
    return G, D, G_ema


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# ----------------------------------------------------------------------------------------------------------
# Our format


def test_snapshot_round_trip_is_bit_exact(tmp_path):
    G, D, G_ema = _nets()
    path = tmp_path / "network-snapshot-000000.pkl"
    tsk = dnnlib.EasyDict(
        class_name="training.dataset.ImageFolderDataset", path="/data/x.zip", use_labels=True, resolution=np.int64(8)
    )
    serialization.save_network_snapshot(
        path, G=G, D=D, G_ema=G_ema, training_set_kwargs=tsk, metadata=dict(kimg=12, tag=("a", 1))
    )
    assert os.listdir(tmp_path) == [path.name]  # atomic: no temp file left behind
    torch.load(path, weights_only=True)  # plain data only
    out = serialization.load_network_pkl(path)
    for name, net in (("G", G), ("D", D), ("G_ema", G_ema)):
        assert type(out[name]) is type(net)
        _assert_same_state(out[name], net)
        assert out[name].init_kwargs == net.init_kwargs
        assert not out[name].training and not any(p.requires_grad for p in out[name].parameters())
    assert out["augment_pipe"] is None
    assert out["training_set_kwargs"].path == "/data/x.zip" and out["training_set_kwargs"].resolution == 8
    assert out["metadata"] == {"kimg": 12, "tag": ("a", 1)}
    z, c = torch.randn(2, 8), torch.randn(2, 2)
    assert torch.equal(out["G_ema"](z, c, noise_mode="const"), G_ema.eval()(z, c, noise_mode="const"))


def test_load_generator_reads_path_and_file_url(tmp_path):
    G, D, G_ema = _nets(1)
    path = tmp_path / "snap.pkl"
    serialization.save_network_snapshot(path, G=G, D=D, G_ema=G_ema)
    for source in (str(path), path.as_uri()):
        loaded = serialization.load_generator(source, "cpu")
        _assert_same_state(loaded, G_ema)


def test_load_does_not_touch_the_global_rng(tmp_path):
    G, D, G_ema = _nets(2)
    path = tmp_path / "snap.pkl"
    serialization.save_network_snapshot(path, G=G, D=D, G_ema=G_ema)
    torch.manual_seed(123)
    serialization.load_network_pkl(path)
    after = torch.randn(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.randn(3))


def test_save_refuses_foreign_classes_and_non_plain_data(tmp_path):
    G, D, G_ema = _nets()
    with pytest.raises(TypeError, match="D is a torch.nn.modules.linear.Linear"):
        serialization.save_network_snapshot(tmp_path / "s.pkl", G=G, D=torch.nn.Linear(2, 2), G_ema=G_ema)
    with pytest.raises(TypeError, match=r"metadata\.when"):
        serialization.save_network_snapshot(tmp_path / "s.pkl", G=G, D=D, G_ema=G_ema, metadata=dict(when=object()))
    assert not (tmp_path / "s.pkl").exists()


def test_unknown_file_is_rejected(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a network snapshot"):
        serialization.load_network_pkl(path)


# ----------------------------------------------------------------------------------------------------------
# Official pickles, built here in the official reduce layout (`persistence` objects and their reduce tuples)

EVIL_SOURCE = "import pathlib\npathlib.Path({marker!r}).write_text('pwned')\nclass Generator: pass\n"


def _reconstruct_persistent_obj(meta):  # only its pickled name matters; the loader must never call it
    raise AssertionError("the official hook was called")


class _Persistent:
    """Pickles as torch_utils.persistence._reconstruct_persistent_obj(meta), like an official persistent class."""

    def __init__(self, module, module_src, init_kwargs=None):
        self.module, self.module_src, self.init_kwargs = module, module_src, init_kwargs

    def __reduce__(self):
        m = self.module
        state = {
            "training": False,
            "_parameters": collections.OrderedDict(m._parameters),
            "_buffers": collections.OrderedDict(m._buffers),
            "_non_persistent_buffers_set": set(),
            "_backward_hooks": collections.OrderedDict(),
            "_forward_hooks": collections.OrderedDict(),
            "_modules": collections.OrderedDict(
                (k, _Persistent(v, self.module_src) if v is not None else None) for k, v in m._modules.items()
            ),
            "_init_args": (),
            "_init_kwargs": dnnlib.EasyDict(self.init_kwargs or {}),
            "weight_gain_np": np.float64(0.125),  # plain attributes can be numpy scalars
            "num_ws_np": np.int64(4),
        }
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=type(m).__name__, state=state)
        return (_reconstruct_persistent_obj, (meta,))


@pytest.fixture
def official_names(monkeypatch):
    """Make the pickler spell our stand-ins with the official module paths."""
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", persistence)
    assert dnnlib.EasyDict.__module__ == "dnnlib.util"


def _official_pickle(tmp_path, nets, protocol, extra=None):
    marker = tmp_path / "executed.txt"
    src = EVIL_SOURCE.format(marker=str(marker))
    data = {name: _Persistent(net, src, dict(net.init_kwargs)) for name, net in nets.items()}
    data["training_set_kwargs"] = dnnlib.EasyDict(path="/data/spine.zip", use_labels=True, resolution=8)
    data.update(extra or {})
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path, marker


@pytest.mark.parametrize("protocol", [2, 4])
def test_official_pickle_loads_without_running_its_code(tmp_path, official_names, protocol):
    G, D, G_ema = _nets(3)
    path, marker = _official_pickle(tmp_path, dict(G=G, D=D, G_ema=G_ema), protocol)
    raw = path.read_bytes()
    assert b"_reconstruct_persistent_obj" in raw and b"write_text" in raw
    with open(path, "rb") as f:
        out = serialization.load_network_pkl(f)
    assert not marker.exists()
    for name, net in (("G", G), ("D", D), ("G_ema", G_ema)):
        assert type(out[name]) is type(net)
        _assert_same_state(out[name], net)
    assert out["augment_pipe"] is None
    assert out["training_set_kwargs"] == {"path": "/data/spine.zip", "use_labels": True, "resolution": 8}


def test_official_pickle_with_augment_pipe_but_no_augment_module_warns(tmp_path, official_names, monkeypatch):
    G, D, G_ema = _nets(4)
    pipe = torch.nn.Module()
    pipe.register_buffer("p", torch.tensor(0.3))
    type_name = type("AugmentPipe", (torch.nn.Module,), {})
    pipe.__class__ = type_name
    path, _ = _official_pickle(
        tmp_path, dict(G=G, D=D, G_ema=G_ema), 4, extra=dict(augment_pipe=_Persistent(pipe, "x = 1", dict(xflip=1)))
    )
    monkeypatch.setitem(sys.modules, "training.augment", None)  # import fails
    with pytest.warns(UserWarning, match="augment_pipe is left as None"):
        out = serialization.load_network_pkl(path)
    assert out["augment_pipe"] is None and out["G_ema"] is not None


def test_official_pickle_shape_mismatch_names_the_key(tmp_path, official_names):
    G, D, G_ema = _nets(5)
    G_ema.synthesis.b8.conv1.bias = torch.nn.Parameter(torch.zeros(7))
    path, _ = _official_pickle(tmp_path, dict(G_ema=G_ema), 4)
    with pytest.raises(ValueError, match=r"synthesis\.b8\.conv1\.bias has shape \[7\].*\[8\]"):
        serialization.load_network_pkl(path)


def test_official_pickle_missing_tensor_is_reported(tmp_path, official_names):
    G, D, G_ema = _nets(6)
    del G_ema.mapping._buffers["w_avg"]
    path, _ = _official_pickle(tmp_path, dict(G_ema=G_ema), 4)
    with pytest.raises(ValueError, match=r"missing \[.mapping\.w_avg.\]"):
        serialization.load_network_pkl(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["top", "nested"])
def test_malicious_pickle_is_refused_by_name(tmp_path, official_names, where):
    marker = tmp_path / "owned"
    if where == "top":
        data = {"G_ema": _Evil(marker)}
    else:
        G, _, _ = _nets(7)
        data = {"G_ema": _Persistent(G, "pass", dict(G.init_kwargs, synthesis_kwargs=_Evil(marker)))}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(ValueError, match=r"refusing to load global (posix|os|nt)\.system"):
        serialization.load_network_pkl(path)
    assert not marker.exists()


def test_official_storage_bytes_are_read_weights_only(tmp_path, official_names, monkeypatch):
    """The embedded storage blob goes through torch.load(weights_only=True), never the unrestricted loader."""
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    G, D, G_ema = _nets(8)
    path, _ = _official_pickle(tmp_path, dict(G_ema=G_ema), 4)
    serialization.load_network_pkl(path)
    assert calls and all(flag is True for flag in calls)


def _augment_pipe():
    augment = pytest.importorskip("training.augment")
    pipe = augment.AugmentPipe(**augment.augpipe_specs["bgc"])
    pipe.p.fill_(0.375)
    return pipe


def test_snapshot_round_trip_with_augment_pipe(tmp_path):
    pipe = _augment_pipe()
    G, D, G_ema = _nets(9)
    serialization.save_network_snapshot(tmp_path / "s.pkl", G=G, D=D, G_ema=G_ema, augment_pipe=pipe)
    out = serialization.load_network_pkl(tmp_path / "s.pkl")["augment_pipe"]
    assert type(out) is type(pipe) and out.init_kwargs == pipe.init_kwargs
    _assert_same_state(out, pipe)
    assert out.p.item() == 0.375


def test_official_pickle_with_augment_pipe(tmp_path, official_names):
    pipe = _augment_pipe()
    G, D, G_ema = _nets(10)
    path, _ = _official_pickle(tmp_path, dict(G_ema=G_ema, augment_pipe=pipe), 4)
    out = serialization.load_network_pkl(path)["augment_pipe"]
    _assert_same_state(out, pipe)


# ----------------------------------------------------------------------------------------------------------
# Refusals: each names the file and what was refused, on one line, and never suggests loading unsafely


class _Legacy:
    """A persistent object in the official layout whose state records no constructor arguments: only running the
    source code it carries could build it."""

    def __init__(self, class_name):
        self.class_name = class_name

    def __reduce__(self):
        meta = dict(
            type="class",
            version=6,
            module_src=EVIL_SOURCE.format(marker="owned"),
            class_name=self.class_name,
            state={"training": False},
        )
        return (_reconstruct_persistent_obj, (meta,))


def _write_bad(tmp_path, kind):
    import bad_inputs

    path = tmp_path / f"{kind}.pkl"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        bad_inputs.text_file(path)
    elif kind == "object":
        bad_inputs.torch_zip_with_object(path)
    elif kind == "code_zip":
        bad_inputs.torch_zip_with_code(path)
    elif kind == "truncated_zip":
        G, D, G_ema = _nets(11)
        serialization.save_network_snapshot(path, G=G, D=D, G_ema=G_ema)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "code_pkl":
        bad_inputs.pickle_with_code(path)
    elif kind == "truncated_pkl":
        G, D, G_ema = _nets(12)
        path.write_bytes(pickle.dumps(dict(G_ema=_Persistent(G_ema, "pass", dict(G_ema.init_kwargs))))[:3000])
    elif kind in ("legacy", "unknown_class"):
        path.write_bytes(pickle.dumps(dict(G_ema=_Legacy("Generator" if kind == "legacy" else "Backdoor")), 4))
    elif kind == "foreign_snapshot_class":
        G, D, G_ema = _nets(13)
        serialization.save_network_snapshot(path, G=G, D=D, G_ema=G_ema)
        data = torch.load(path, weights_only=True)
        data["nets"]["G"]["class_name"] = "os.system"
        torch.save(data, path)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", r"missing\.pkl: cannot read the network snapshot \(no such file\)"),
        ("empty", r"empty\.pkl: not a network snapshot: .* found an empty file"),
        ("text", r"text\.pkl: not a network snapshot: .* found a file starting with b'not a mo'"),
        ("object", r"object\.pkl: refusing to load it .* names the Python global bad_inputs\.Payload"),
        ("code_zip", r"code_zip\.pkl: refusing to load it .* names the Python global (posix|nt)\.system"),
        ("truncated_zip", r"truncated_zip\.pkl: not a readable torch\.save archive, truncated or damaged"),
        ("code_pkl", r"code_pkl\.pkl: refusing to load global (posix|nt)\.system \(a class or function: code"),
        ("truncated_pkl", r"truncated_pkl\.pkl: not a readable network pickle, truncated or damaged"),
        ("legacy", r"legacy\.pkl: G_ema: refusing the persistent Generator: it records no constructor arguments"),
        ("unknown_class", r"unknown_class\.pkl: G_ema: refusing the persistent class 'Backdoor'"),
        ("foreign_snapshot_class", r"foreign_snapshot_class\.pkl: G: refusing class 'os\.system'"),
    ],
)
def test_bad_files_are_refused_with_one_line_naming_what(tmp_path, official_names, kind, message):
    path = tmp_path / "missing.pkl" if kind == "missing" else _write_bad(tmp_path, kind)
    with pytest.raises(dnnlib.UserError) as info:
        serialization.load_network_pkl(str(path))
    text = str(info.value)
    assert re.search(message, text), text
    assert "\n" not in text and "weights_only" not in text
    assert not (tmp_path / "owned").exists()


def test_load_weights_only_never_unpickles_a_raw_pickle(tmp_path, monkeypatch):
    import bad_inputs

    path = bad_inputs.pickle_with_code(tmp_path / "raw.pt")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(dnnlib.UserError, match=r"raw\.pt: not a SpineGAN checkpoint: .* a raw Python pickle"):
        serialization.load_weights_only(path, str(path), "a SpineGAN checkpoint")
