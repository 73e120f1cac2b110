"""spine.evaluation.synthesize: exact per-class counts, recorded seeds, loads for training, anonymous synthetic
DICOM."""

import io
import json
import os
import zipfile

import numpy as np
import pydicom
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from spine.evaluation import synthesize
from training.dataset import ImageFolderDataset
from training.generation import seed_latents
from training.networks import Generator
from training.serialization import save_network_snapshot


def tiny_generator(c_dim: int = 2) -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    ).eval()


@pytest.fixture
def snapshot(tmp_path):
    G = tiny_generator()
    path = str(tmp_path / "network-snapshot-000002.pkl")
    save_network_snapshot(path, G=G, D=None, G_ema=G, metadata=dict(cur_nimg=2000))
    return path, G


def test_counts_seeds_and_training_format(tmp_path, snapshot):
    path, G = snapshot
    dest = str(tmp_path / "synthetic.zip")
    result = CliRunner().invoke(
        synthesize.main,
        ["--network", path, "--dest", dest, "--class-mix", "5,3", "--seed", "100", "--batch", "3", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    dataset = ImageFolderDataset(dest, use_labels=True)
    labels = [int(np.argmax(dataset.get_label(i))) for i in range(len(dataset))]
    assert len(dataset) == 8 and labels.count(0) == 5 and labels.count(1) == 3
    assert dataset.image_shape == [1, 16, 16] and dataset.has_onehot_labels
    meta = dataset.metadata
    assert meta["synthetic"] is True and meta["class_counts"] == {"normal": 5, "abnormal": 3}
    assert meta["label_mode"] == "abnormality" and meta["class_names"] == ["normal", "abnormal"]
    assert [e["seed"] for e in meta["images"]] == list(range(100, 108))
    assert meta["generator"]["kimg"] == 2 and len(meta["generator"]["network_sha256"]) == 64
    # Every image is the generator's output for its recorded seed and class, quantised as generate.py does.
    k = 6
    entry = meta["images"][k]
    z = torch.from_numpy(seed_latents([entry["seed"]], G.z_dim)).float()
    c = torch.tensor([[0.0, 1.0]])
    with torch.no_grad():
        expected = (G(z, c, noise_mode="const") * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
    image, label = dataset[k]
    assert entry["label"] == 1 and label.tolist() == [0.0, 1.0]
    np.testing.assert_array_equal(image, expected)


def test_per_class_into_folder_and_refuses_to_overwrite(tmp_path, snapshot):
    path, _G = snapshot
    dest = str(tmp_path / "synth")
    args = ["--network", path, "--dest", dest, "--per-class", "4", "--device", "cpu"]
    assert CliRunner().invoke(synthesize.main, args).exit_code == 0
    assert ImageFolderDataset(dest, use_labels=True).metadata["class_counts"] == {"normal": 4, "abnormal": 4}
    again = CliRunner().invoke(synthesize.main, args)
    assert again.exit_code == 1 and "not an empty folder" in again.output


def test_bad_class_mix_is_refused(tmp_path, snapshot):
    path, _G = snapshot
    result = CliRunner().invoke(
        synthesize.main,
        ["--network", path, "--dest", str(tmp_path / "x.zip"), "--class-mix", "1,2,3", "--device", "cpu"],
    )
    assert result.exit_code == 1 and "--class-mix has 3 counts but the generator has 2 classes" in result.output
    assert not (tmp_path / "x.zip").exists()


def test_dicom_is_marked_synthetic_and_carries_no_patient_data(tmp_path, snapshot):
    path, _G = snapshot
    dicom_dir = tmp_path / "dicom"
    result = CliRunner().invoke(
        synthesize.main,
        [
            "--network",
            path,
            "--dest",
            str(tmp_path / "s.zip"),
            "--per-class",
            "2",
            "--dicom",
            str(dicom_dir),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(dicom_dir.rglob("*.dcm"))
    assert len(files) == 4
    uids = set()
    with zipfile.ZipFile(tmp_path / "s.zip") as z:
        pngs = sorted(n for n in z.namelist() if n.endswith(".png"))
        meta = json.loads(z.read("dataset.json"))
    for f, png in zip(files, pngs):
        ds = pydicom.dcmread(f)
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.ConversionType == "SYN"
        assert "SYNTHETIC" in ds.SeriesDescription and ds.BurnedInAnnotation == "NO"
        assert ds.PatientName == "SYNTHETIC" and ds.PatientID == "SYNTHETIC"
        assert ds.PatientBirthDate == "" and ds.PatientSex == "" and ds.StudyDate == ""
        for keyword in (
            "PatientAge",
            "PatientAddress",
            "InstitutionName",
            "OtherPatientIDs",
            "PatientWeight",
            "OperatorsName",
            "PerformingPhysicianName",
            "AcquisitionDate",
            "DeviceSerialNumber",
        ):
            assert keyword not in ds, keyword
        assert not any(elem.tag.is_private for elem in ds)
        uids |= {ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID}
        with zipfile.ZipFile(tmp_path / "s.zip") as z:
            np.testing.assert_array_equal(ds.pixel_array, np.asarray(Image.open(io.BytesIO(z.read(png)))))
    assert len(uids) == 12  # fresh UIDs for every instance, series and study
    assert meta["spinegan"]["synthetic"] is True


# Bad inputs -> (options, exit status, the distinctive part of the one error line); nothing may be written.
BAD_INPUTS = {
    "text file": (["--network", "{text}"], 1, "not a network snapshot"),
    "torch.save with a foreign class": (["--network", "{object}"], 1, "names the Python global bad_inputs.Payload"),
    "pickle with code": (["--network", "{code_pkl}"], 1, "refusing to load global posix.system"),
    "missing network": (["--network", "{tmp}/none.pkl"], 2, "does not exist"),
    "unconditional generator": (["--network", "{unconditional}"], 1, "the generator is unconditional"),
    "class mix of other classes": (["--class-mix", "1,2,3"], 1, "--class-mix has 3 counts but the generator has 2"),
    "seeds past 2**32-1": (["--seed", "4294967295"], 1, "need seeds up to 4294967298, but seeds are 0..4294967295"),
    "seed above 2**32-1": (["--seed", "4294967296"], 2, "is not in the range 0<=x<=4294967295"),
    "existing destination": (["--dest", "{text}"], 1, "is not an empty folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(tmp_path, snapshot, case):
    import bad_inputs

    path, _G = snapshot
    unconditional = str(tmp_path / "unconditional.pkl")
    save_network_snapshot(unconditional, G=None, D=None, G_ema=tiny_generator(c_dim=0))
    files = dict(
        tmp=tmp_path,
        text=bad_inputs.text_file(tmp_path / "notes.txt"),
        unconditional=unconditional,
        object=bad_inputs.torch_zip_with_object(tmp_path / "object.pkl"),
        code_pkl=bad_inputs.pickle_with_code(tmp_path / "code.pkl"),
    )
    changes, exit_code, message = BAD_INPUTS[case]
    options = {"--network": path, "--dest": str(tmp_path / "s.zip"), "--per-class": "2", "--device": "cpu"}
    if "--class-mix" in changes:
        del options["--per-class"]
    options.update(dict(zip(changes[::2], [value.format(**files) for value in changes[1::2]])))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(synthesize.main, [item for pair in options.items() for item in pair])
    bad_inputs.assert_refused(result, message.format(**files), exit_code, tmp_path, before)


def test_temp_file_of_a_killed_write_beside_the_destination_is_removed(tmp_path, snapshot):
    path, _G = snapshot
    stale, foreign = tmp_path / ".s.zip.q1w2e3r4.tmp", tmp_path / ".s.zip.tmp"
    for leftover in (stale, foreign):
        leftover.write_bytes(b"half a zip")
        os.utime(leftover, (0, 0))
    result = CliRunner().invoke(
        synthesize.main, ["--network", path, "--dest", str(tmp_path / "s.zip"), "--per-class", "1", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert not stale.exists() and foreign.exists() and (tmp_path / "s.zip").is_file()


def test_local_difference_draws_abnormal_images_from_the_normal_rendering(tmp_path, snapshot):
    path, G = snapshot
    dest = str(tmp_path / "local.zip")
    args = ["--network", path, "--dest", dest, "--class-mix", "2,2", "--local-difference", "0.25", "--device", "cpu"]
    result = CliRunner().invoke(synthesize.main, args)
    assert result.exit_code == 0, result.output
    dataset = ImageFolderDataset(dest, use_labels=True)
    assert dataset.metadata["source"]["local_difference"] == 0.25
    z = torch.from_numpy(seed_latents([2], G.z_dim)).float()  # image 2: the first abnormal one
    with torch.no_grad():
        normal = G(z, torch.tensor([[1.0, 0.0]]), noise_mode="const")
        abnormal = G(z, torch.tensor([[0.0, 1.0]]), noise_mode="const")
    image = torch.from_numpy(dataset[2][0]).double()
    quantised = lambda x: (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].double()  # noqa: E731
    # the pixels of the kept part are the abnormal rendering's; at least 3/4 of the image (less the softened edge)
    # stays the normal rendering's, to the grey level (the two renderings differ on almost every pixel)
    same_as_normal = (image - quantised(normal)).abs() <= 1
    assert same_as_normal.float().mean() >= 0.5 and not torch.equal(image, quantised(normal))
    assert not torch.equal(image, quantised(abnormal))


def test_local_difference_needs_a_normal_class(tmp_path, snapshot):
    path, _G = snapshot
    args = ["--network", path, "--dest", str(tmp_path / "x.zip"), "--per-class", "1", "--local-difference", "0.5"]
    result = CliRunner().invoke(synthesize.main, [*args, "--class-names", "spur,slip", "--device", "cpu"])
    assert result.exit_code == 1 and "class 0 is 'normal'" in result.output and not (tmp_path / "x.zip").exists()


def test_a_plan_shares_each_class_among_the_snapshots_in_turn():
    plan = synthesize.SynthesisPlan.from_counts([5, 3], first_seed=7, num_sources=2)
    assert plan.classes == [0, 0, 0, 0, 0, 1, 1, 1]
    assert plan.seeds == list(range(7, 15))
    assert plan.sources == [0, 1, 0, 1, 0, 0, 1, 0]
    assert synthesize.SynthesisPlan.from_counts([2, 2], first_seed=0).sources == [0, 0, 0, 0]


def test_a_twin_plan_draws_the_same_latents_in_every_class():
    plan = synthesize.SynthesisPlan.from_counts([3, 3], first_seed=7, num_sources=2, twins=True)
    assert plan.classes == [0, 0, 0, 1, 1, 1] and plan.seeds == [7, 8, 9, 7, 8, 9] and plan.twins
    assert plan.sources == [0, 1, 0, 0, 1, 0]  # a twin pair comes from one snapshot
    assert not synthesize.SynthesisPlan.from_counts([3, 3], first_seed=7).twins
    with pytest.raises(ValueError, match=r"--twins: every class needs the same number of images, got \[3, 2\]"):
        synthesize.SynthesisPlan.from_counts([3, 2], first_seed=7, twins=True)
    last = synthesize.MAX_SEED - 2  # three seeds per class fit below the largest seed, as twins
    assert max(synthesize.SynthesisPlan.from_counts([3, 3], first_seed=last, twins=True).seeds) == synthesize.MAX_SEED


def test_twins_differ_by_their_class_alone_and_share_a_study(tmp_path, snapshot):
    path, G = snapshot
    dest = str(tmp_path / "twins.zip")
    args = ["--network", path, "--dest", dest, "--per-class", "3", "--seed", "5", "--twins", "--device", "cpu"]
    result = CliRunner().invoke(synthesize.main, args)
    assert result.exit_code == 0, result.output
    assert "seeds 5..7 in every class (twins)" in result.output
    dataset = ImageFolderDataset(dest, use_labels=True)
    images = dataset.metadata["images"]
    assert [(e["seed"], e["label"]) for e in images] == [(5, 0), (6, 0), (7, 0), (5, 1), (6, 1), (7, 1)]
    assert [e["study_id"] for e in images[:3]] == [e["study_id"] for e in images[3:]]
    assert len({e["image_id"] for e in images}) == 6 and images[3]["image_id"] == "synthetic-seed5-abnormal"
    z = torch.from_numpy(seed_latents([5], G.z_dim)).float().repeat(2, 1)
    with torch.no_grad():
        expected = (G(z, torch.eye(2), noise_mode="const") * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(dataset[0][0], expected[0])
    np.testing.assert_array_equal(dataset[3][0], expected[1])
    mixed_args = ["--network", path, "--dest", str(tmp_path / "m.zip"), "--class-mix", "3,2", "--twins"]
    mixed = CliRunner().invoke(synthesize.main, [*mixed_args, "--device", "cpu"])
    assert mixed.exit_code == 1 and "--twins: every class needs the same number of images" in mixed.output


def test_several_snapshots_draw_each_image_from_its_own(tmp_path, snapshot):
    """A trajectory pool: image j of a class is snapshot j mod k's output for its seed, recorded in dataset.json."""
    first, G0 = snapshot
    torch.manual_seed(1)
    G1 = tiny_generator()
    for p in G1.parameters():  # another snapshot: the same network with other weights
        p.data.normal_()
    second = str(tmp_path / "network-snapshot-000004.pkl")
    save_network_snapshot(second, G=G1, D=None, G_ema=G1, metadata=dict(cur_nimg=4000))
    dest = str(tmp_path / "pool.zip")
    args = ["--network", first, "--network", second, "--dest", dest, "--class-mix", "3,2", "--seed", "10"]
    result = CliRunner().invoke(synthesize.main, [*args, "--batch", "4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "from 2 snapshots in turn" in result.output
    dataset = ImageFolderDataset(dest, use_labels=True)
    meta = dataset.metadata
    assert [e["snapshot"] for e in meta["images"]] == [0, 1, 0, 0, 1]
    assert meta["generator"]["kimg"] == [2, 4] and len(meta["generator"]["snapshots"]) == 2
    for k, entry in enumerate(meta["images"]):
        G = (G0, G1)[entry["snapshot"]]
        z = torch.from_numpy(seed_latents([entry["seed"]], G.z_dim)).float()
        c = torch.nn.functional.one_hot(torch.tensor([entry["label"]]), 2).float()
        with torch.no_grad():
            expected = (G(z, c, noise_mode="const") * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
        # one quantisation level: the snapshot ran on a sub-batch, whose float sums may round differently
        np.testing.assert_allclose(dataset[k][0].astype(int), expected.astype(int), atol=1, rtol=0)
    different = np.abs(dataset[0][0].astype(int) - dataset[1][0].astype(int)).max()
    assert different > 1  # the two snapshots really drew


def test_snapshots_of_other_shapes_are_refused_by_name(tmp_path, snapshot):
    import bad_inputs

    path, _G = snapshot
    other = str(tmp_path / "three-classes.pkl")
    save_network_snapshot(other, G=None, D=None, G_ema=tiny_generator(c_dim=3))
    args = ["--network", path, "--network", other, "--dest", str(tmp_path / "s.zip"), "--per-class", "2"]
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(synthesize.main, [*args, "--device", "cpu", "--class-names", "normal,abnormal"])
    message = (
        "--network: the snapshots differ in (classes, z_dim, resolution, channels): [(2, 8, 16, 1), (3, 8, 16, 1)]"
    )
    bad_inputs.assert_refused(result, message, 1, tmp_path, before)


def test_random_noise_is_seeded_per_batch_and_leaves_the_callers_random_state(snapshot):
    """noise_mode 'random': the same plan and batch size draw the same images, twice, whatever the global random
    state, which is left as it was; the noise inputs do draw (const differs)."""
    _path, G = snapshot
    with torch.no_grad():
        for block in (G.synthesis.b8, G.synthesis.b16):  # a fresh G's noise strengths are 0: make the noise visible
            block.conv1.noise_strength.fill_(0.5)
    plan = synthesize.SynthesisPlan.from_counts([3, 2], first_seed=20)

    def draw(noise_mode, global_seed):
        torch.manual_seed(global_seed)
        batches = list(synthesize.generate_batches([G], plan, 1.0, noise_mode, 2, torch.device("cpu")))
        return torch.cat([images for _start, images in batches]), torch.rand(1)

    first, after_first = draw("random", 0)
    second, after_second = draw("random", 1)
    assert torch.equal(first, second)
    torch.manual_seed(1)
    assert torch.equal(after_second, torch.rand(1)) and not torch.equal(after_first, after_second)
    const, _ = draw("const", 0)
    assert float((first - const).abs().max()) > 0.01
