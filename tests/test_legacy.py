"""legacy.load_network_pkl: the official entry point reads our snapshots, our checkpoints and official pickles."""

import os
import sys

import torch
from click.testing import CliRunner

import dnnlib
import generate
import legacy
from training import checkpoint as ckpt
from training.networks import Discriminator, Generator
from training.serialization import save_network_snapshot

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "training"))
from test_serialization import _official_pickle, official_names  # noqa: E402,F401  (official pickle stand-ins)


def nets(seed: int = 0) -> tuple[Generator, Discriminator, Generator]:
    torch.manual_seed(seed)
    G = Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )
    D = Discriminator(c_dim=2, img_resolution=8, img_channels=1, channel_base=64, channel_max=8)
    G_ema = Generator(**G.init_kwargs).eval()
    return G, D, G_ema


def write_checkpoint(path: str, G, D, G_ema, cur_nimg: int = 48) -> None:
    ckpt.save_checkpoint(
        path,
        nets=dict(G=G, D=D, G_ema=G_ema, augment_pipe=None),
        optimizers={},
        pl_mean=0.0,
        progress=dict(cur_nimg=cur_nimg, cur_tick=3, batch_idx=3, tick_start_nimg=cur_nimg),
        process_states=[],
        training_set_kwargs=dict(path="/data/x.zip"),
        options={},
    )


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_our_snapshot_gives_the_official_dict(tmp_path):
    G, D, G_ema = nets()
    path = str(tmp_path / "network-snapshot-000000.pkl")
    save_network_snapshot(path, G=G, D=D, G_ema=G_ema, training_set_kwargs=dict(path="/data/x.zip"))
    with dnnlib.util.open_url(path) as f:
        data = legacy.load_network_pkl(f)
    assert {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"} <= set(data)
    assert same_state(data["G_ema"], G_ema) and same_state(data["D"], D) and data["augment_pipe"] is None
    assert data["training_set_kwargs"]["path"] == "/data/x.zip"


def test_checkpoint_reads_as_its_networks(tmp_path):
    G, D, G_ema = nets(1)
    path = str(tmp_path / "checkpoint.pt")
    write_checkpoint(path, G, D, G_ema)
    with open(path, "rb") as f:
        data = legacy.load_network_pkl(f)
    assert same_state(data["G"], G) and same_state(data["G_ema"], G_ema) and same_state(data["D"], D)
    assert data["metadata"]["cur_nimg"] == 48 and data["training_set_kwargs"]["path"] == "/data/x.zip"


def test_official_pickle(tmp_path, official_names):
    G, D, G_ema = nets(2)
    path, marker = _official_pickle(tmp_path, dict(G=G, D=D, G_ema=G_ema), protocol=4)
    with open(path, "rb") as f:
        data = legacy.load_network_pkl(f)
    assert not marker.exists()  # its embedded source never ran
    assert same_state(data["G_ema"], G_ema) and data["training_set_kwargs"]["path"] == "/data/spine.zip"


def test_force_fp16_rebuilds_with_the_official_settings(tmp_path):
    G, D, G_ema = nets(3)
    path = str(tmp_path / "snap.pkl")
    save_network_snapshot(path, G=G, D=D, G_ema=G_ema)
    with open(path, "rb") as f:
        data = legacy.load_network_pkl(f, force_fp16=True)
    assert data["G_ema"].init_kwargs.synthesis_kwargs.num_fp16_res == 4
    assert data["D"].init_kwargs.num_fp16_res == 4 and data["D"].init_kwargs.conv_clamp == 256
    assert same_state(data["G_ema"], G_ema) and same_state(data["D"], D)  # the weights are untouched


def test_generate_uses_a_checkpoints_G_ema(tmp_path):
    """generate.py given checkpoint.pt draws the same images as given the snapshot of the same networks."""
    G, D, G_ema = nets(4)
    write_checkpoint(str(tmp_path / "checkpoint.pt"), G, D, G_ema)
    save_network_snapshot(str(tmp_path / "snap.pkl"), G=G, D=D, G_ema=G_ema)
    for source, out in (("checkpoint.pt", "a"), ("snap.pkl", "b")):
        result = CliRunner().invoke(
            generate.main,
            ["--network", str(tmp_path / source), "--seeds", "0-2", "--class", "1", "--outdir", str(tmp_path / out)],
        )
        assert result.exit_code == 0, result.output
    for name in ("seed0000.png", "seed0001.png", "seed0002.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_command_converts_an_official_pickle_into_our_snapshot(tmp_path, official_names):
    import bad_inputs

    G, D, G_ema = nets()
    source, marker = _official_pickle(tmp_path, dict(G=G, D=D, G_ema=G_ema), protocol=4)
    result = CliRunner().invoke(
        legacy.convert_network_pickle, ["--source", str(source), "--dest", str(tmp_path / "ours.pkl")]
    )
    assert result.exit_code == 0 and "Wrote G, D, G_ema of" in result.output, result.output
    assert not marker.exists()  # the pickle's code never ran
    data = torch.load(tmp_path / "ours.pkl", weights_only=True)  # plain data: our format
    with open(tmp_path / "ours.pkl", "rb") as f:
        ours = legacy.load_network_pkl(f)
    assert data["format"] == "spinegan-snapshot-v1" and same_state(ours["G_ema"], G_ema) and same_state(ours["D"], D)
    code = bad_inputs.pickle_with_code(tmp_path / "code.pkl")
    before = bad_inputs.tree(tmp_path)
    bad_inputs.assert_refused(
        CliRunner().invoke(legacy.convert_network_pickle, ["--source", str(code), "--dest", str(tmp_path / "out.pkl")]),
        "refusing to load global posix.system",
        root=tmp_path,
        before=before,
    )


def test_help_says_what_the_script_is_for():
    result = CliRunner().invoke(legacy.convert_network_pickle, ["--help"])
    assert result.exit_code == 0 and "legacy.load_network_pkl(f)" in result.output and "--source" in result.output
