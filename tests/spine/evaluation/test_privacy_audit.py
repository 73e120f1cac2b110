"""Privacy audit: known shares and attack results on constructed cases; the CLI writes its three outputs."""

import json
import math
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from spine.dp.ledger import JUDGE_OUTSIDE_ACCOUNT
from spine.evaluation import privacy_audit


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """Distinct low-frequency gray 16x16 images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)


def test_copies_of_training_images_are_caught():
    train, heldout = smooth_images(40, 0), smooth_images(40, 1)
    generated = train[torch.arange(40) % 40].clone()
    spaces = privacy_audit.audit(
        generated, train, heldout, {"random_conv": privacy_audit.random_conv_embedding(1, seed=0)}
    )
    for r in spaces.values():
        assert r["share_closer_to_train"] == 1.0
        assert r["generated_to_train"]["min"] == 0.0
        assert r["mia_auc"] == 1.0  # every member is at distance 0, every non-member further away
        assert r["mia_tpr_at_1pct_fpr"] == 1.0


def test_fresh_samples_look_like_chance():
    train, heldout, generated = smooth_images(300, 0), smooth_images(300, 1), smooth_images(300, 2)
    r = privacy_audit.audit(generated, train, heldout, {})["pixel"]
    # Three independent draws from one distribution: share ~ Binomial(300, 0.5)/300 (sd 0.029), AUC ~ 0.5 (sd 0.024).
    assert abs(r["share_closer_to_train"] - 0.5) < 0.1
    assert abs(r["mia_auc"] - 0.5) < 0.1


def test_inversion_tells_images_the_generator_draws_from_others():
    # Members the generator itself drew are reconstructed almost exactly; smooth random images, outside its range,
    # are not: every member scores above every non-member.
    from metrics.projection import synthesize
    from training.networks import Generator

    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=256, channel_max=16),
    ).eval()
    with torch.no_grad():
        members = synthesize(G, G.mapping(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), None)[:, 0])
    r = privacy_audit.inversion_attack(
        G, members, smooth_images(4, 1), num=4, steps=300, seed=0, device=torch.device("cpu")
    )
    assert r["num_per_set"] == 4 and r["steps"] == 300 and "pixel" in r["distance"]
    assert r["member_distance_median"] < 1e-3 < r["nonmember_distance_median"]
    assert r["mia_auc"] == 1.0 and r["mia_tpr_at_1pct_fpr"] == 1.0


def test_nearest_matches_brute_force():
    q, refs = torch.randn(7, 5, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    d, i = privacy_audit.nearest(q, refs, batch=3)
    brute = np.array([[np.linalg.norm(a - b) for b in refs.numpy()] for a in q.numpy()])
    assert np.allclose(d, brute.min(1)) and (i == brute.argmin(1)).all()


def test_tpr_at_fpr_known_answer():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([9, 8, 3, 1, 7, 2, 0, -1])
    assert privacy_audit.tpr_at_fpr(labels, scores, 0.0) == 0.5  # threshold 8: two members, no non-member
    assert privacy_audit.tpr_at_fpr(labels, scores, 0.25) == 0.75


def test_privacy_statement():
    assert "none recorded" in privacy_audit.privacy_statement({})["guarantee"]
    stated = privacy_audit.privacy_statement(
        dict(privacy=dict(epsilon=3.21, delta=1e-5, unit="study", differentially_private=True))
    )
    assert stated["guarantee"].startswith("(3.21, 1e-05)-DP per study")
    assert any("model selection" in item for item in stated["not_covered"])
    assert JUDGE_OUTSIDE_ACCOUNT not in stated["not_covered"]
    assert stated["mia_tpr_bound"] == pytest.approx(math.exp(3.21) * 0.01 + 1e-5, rel=1e-12)
    with_judge = privacy_audit.privacy_statement(
        dict(
            privacy=dict(epsilon=3.21, delta=1e-5, unit="image", differentially_private=True),
            clinical_loss=dict(weight=0.1),
        )
    )
    assert with_judge["not_covered"][0] == JUDGE_OUTSIDE_ACCOUNT
    text = privacy_audit.markdown(
        dict(network="G.pkl", num_generated=1, num_train=1, num_heldout=1, privacy=with_judge, spaces={})
    )
    assert f"no membership attack on one image reaches a TPR above {with_judge['mia_tpr_bound']:.4f} at 1% FPR" in text


def test_privacy_statement_of_a_composed_account():
    """A run whose account holds the DP-trained judge states the total and each part, and its own outside list."""
    privacy = dict(
        epsilon=9.5,
        delta=1e-5,
        unit="image",
        differentially_private=True,
        epsilon_parts=dict(discriminator=8.0, judge=3.0),
        outside_account=["reals.png"],
    )
    stated = privacy_audit.privacy_statement(dict(privacy=privacy, clinical_loss=dict(weight=0.1)))
    assert stated["guarantee"] == (
        "(9.5, 1e-05)-DP per image for the discriminator's training composed with the DP-trained clinical judge's "
        "(discriminator 8 alone, judge 3 alone); the generator is post-processing"
    )
    assert stated["not_covered"] == ["reals.png"]
    public_data = dict(privacy, epsilon=3.0, epsilon_parts=dict(discriminator=0.0, judge=3.0))
    stated = privacy_audit.privacy_statement(dict(privacy=public_data, clinical_loss=dict(weight=0.3)))
    assert stated["guarantee"] == (
        "(3, 1e-05)-DP per image for the DP-trained clinical judge's training (discriminator 0 alone, judge 3 alone), "
        "the only mechanism that read the private images (G and D trained on declared-public images); the generator "
        "is post-processing"
    )


@pytest.mark.parametrize(
    "epsilon, delta, fpr, expected",
    [
        (0.0, 0.0, 0.01, 0.01),  # no privacy loss: the attack is a coin
        (math.log(2), 0.0, 0.01, 0.02),  # e^eps FPR binds at small FPR
        (math.log(2), 0.0, 0.9, 1 - 0.5 * 0.1),  # 1 - e^-eps (1 - FPR) binds at large FPR
        (10.0, 1e-5, 0.01, 1 - math.exp(-10) * (1 - 1e-5 - 0.01)),
        (1000.0, 1e-5, 0.01, 1.0),  # no overflow
    ],
)
def test_dp_tpr_bound_closed_forms(epsilon, delta, fpr, expected):
    assert privacy_audit.dp_tpr_bound(epsilon, delta, fpr) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_real_sets_are_cut_to_equal_size():
    train = torch.arange(10.0).reshape(10, 1, 1, 1)
    heldout = -torch.arange(4.0).reshape(4, 1, 1, 1)
    cut_train, same_heldout = privacy_audit.equal_sizes(train, heldout, seed=3)
    assert same_heldout is heldout and len(cut_train) == 4
    rows = cut_train.flatten().tolist()
    assert len(set(rows)) == 4 and set(rows) <= set(range(10))  # a subset, without repeats
    assert torch.equal(privacy_audit.equal_sizes(train, heldout, seed=3)[0], cut_train)  # seeded
    assert privacy_audit.equal_sizes(heldout, train, seed=3)[0] is heldout  # the smaller set is never cut


def write_folder(path, images: torch.Tensor) -> str:
    os.makedirs(path)
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    for i, img in enumerate(pixels):
        PIL.Image.fromarray(img[0], "L").save(os.path.join(path, f"img{i:03d}.png"))
    return str(path)


def test_cli_writes_report(tmp_path):
    from training.networks import Generator
    from training.serialization import save_network_snapshot

    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=128, channel_max=8),
    ).eval()
    pkl = str(tmp_path / "snap.pkl")
    save_network_snapshot(
        pkl,
        G=G,
        D=None,
        G_ema=G,
        metadata=dict(privacy=dict(epsilon=2.0, delta=1e-5, unit="image", differentially_private=True)),
    )
    train = write_folder(tmp_path / "train", smooth_images(12, 0))
    heldout = write_folder(tmp_path / "heldout", smooth_images(8, 1))
    out = tmp_path / "audit"
    result = CliRunner().invoke(
        privacy_audit.main,
        [
            "--network",
            pkl,
            "--train",
            train,
            "--heldout",
            heldout,
            "--outdir",
            str(out),
            "--num",
            "10",
            "--pairs",
            "4",
            "--inversion",
            "3",
            "--inversion-steps",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.load(open(out / "privacy_audit.json"))
    assert set(report["spaces"]) == {"pixel", "random_conv"} and report["num_generated"] == 10
    assert report["num_train"] == report["num_heldout"] == 8  # 12 training images cut to the held-out 8
    assert report["privacy"]["guarantee"].startswith("(2, 1e-05)-DP per image")
    assert report["inversion"]["num_per_set"] == 3 and 0 <= report["inversion"]["mia_auc"] <= 1
    assert "| pixel |" in (out / "privacy_audit.md").read_text()
    assert "| inversion (3 per set, 5 steps) |" in (out / "privacy_audit.md").read_text()
    assert PIL.Image.open(out / "closest_pairs.png").size == (4 * 16, 2 * 16)


# Bad inputs -> (options, exit status, the distinctive part of the one error line); nothing may be written.
BAD_INPUTS = {
    "missing network": (["--network", "{tmp}/none.pkl"], 1, "none.pkl: cannot read the network snapshot"),
    "torch.save with code": (["--network", "{code_zip}"], 1, "names the Python global posix.system"),
    "pickle with code": (["--network", "{code_pkl}"], 1, "refusing to load global posix.system"),
    "text file": (["--network", "{text}"], 1, "not a network snapshot"),
    "mixed image sizes": (["--train", "{mixed}"], 1, "img01.png: shape [1, 8, 8] (CHW) differs from the first"),
    "images of another size": (
        ["--heldout", "{small}"],
        1,
        "images of shape [1, 8, 8] (CHW); the generator makes [1, 16, 16]",
    ),
    "not a dataset": (["--train", "{text}"], 1, "expected a folder or a zip of images"),
    "classifier with code": (["--classifier", "{code_zip}"], 1, "--classifier: {code_zip}: refusing to load it"),
    "no images asked for": (["--num", "0"], 2, "0 is not in the range x>=1"),
    "negative inversion": (["--inversion", "-1"], 2, "-1 is not in the range x>=0"),
    "held-out set is the training set": (
        ["--heldout", "{tmp}/train"],
        1,
        "--heldout={tmp}/train: all 4 of its images are also in --train={tmp}/train",
    ),
    "report folder under a file": (["--outdir", "{text}/out"], 1, "notes.txt is a file, not a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_one_line_and_write_nothing(tmp_path, case):
    import bad_inputs

    from training.networks import Generator
    from training.serialization import save_network_snapshot

    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=128, channel_max=8),
    ).eval()
    pkl = str(tmp_path / "snap.pkl")
    save_network_snapshot(pkl, G=G, D=None, G_ema=G)
    files = dict(
        tmp=tmp_path,
        text=bad_inputs.text_file(tmp_path / "notes.txt"),
        code_zip=bad_inputs.torch_zip_with_code(tmp_path / "code.pt"),
        code_pkl=bad_inputs.pickle_with_code(tmp_path / "code.pkl"),
        mixed=bad_inputs.write_images(tmp_path / "mixed", [16, 8]),
        small=bad_inputs.write_images(tmp_path / "small", [8, 8]),
    )
    changes, exit_code, message = BAD_INPUTS[case]
    options = {
        "--network": pkl,
        "--train": write_folder(tmp_path / "train", smooth_images(4, 0)),
        "--heldout": write_folder(tmp_path / "heldout", smooth_images(4, 1)),
        "--outdir": str(tmp_path / "out"),
        "--num": "4",
    }
    options.update(dict(zip(changes[::2], [value.format(**files) for value in changes[1::2]])))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(privacy_audit.main, [item for pair in options.items() for item in pair])
    bad_inputs.assert_refused(result, message.format(**files), exit_code, tmp_path, before)


def test_a_heldout_set_sharing_some_training_images_is_warned_of(tmp_path):
    from training.networks import Generator
    from training.serialization import save_network_snapshot

    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=128, channel_max=8),
    ).eval()
    save_network_snapshot(tmp_path / "snap.pkl", G=G, D=None, G_ema=G)
    train = smooth_images(4, 0)
    heldout = torch.cat([train[:1], smooth_images(3, 1)])  # one member among the held-out images
    result = CliRunner().invoke(
        privacy_audit.main,
        [
            "--network",
            str(tmp_path / "snap.pkl"),
            "--train",
            write_folder(tmp_path / "train", train),
            "--heldout",
            write_folder(tmp_path / "heldout", heldout),
            "--outdir",
            str(tmp_path / "out"),
            "--num",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "1 of its 4 images are also in --train" in warnings[0]
