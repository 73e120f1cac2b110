"""classifier.pkl round trip and validation, input mapping, architectures, augmentation, training and the CLI."""

import dataclasses
import json
import math
import pickle

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from tolerances import rounding_tol

from spine.classifier import artifact as clf
from spine.classifier.cli import auc_summary, chance_warning, cli
from spine.classifier.data import load_labelled_images, predict_probabilities
from spine.classifier.models import build_network, training_memory_format
from spine.classifier.training import TrainOptions, augment_batch, train_classifier, validation_auc
from spine.scoring import roc_auc


def _spec(**changes) -> clf.ClassifierSpec:
    spec = clf.ClassifierSpec(
        arch="small_cnn",
        arch_kwargs=dict(width=4, num_blocks=2),
        label_mode="abnormality",
        class_names=("normal", "abnormal"),
        resolution=16,
        channels=1,
        intensity=dict(scale=1 / 255, mean=[0.4], std=[0.2]),
        thresholds=(0.5,),
    )
    return dataclasses.replace(spec, **changes)


def _saved_classifier(path, spec=None) -> torch.nn.Module:
    spec = spec or _spec()
    torch.manual_seed(0)
    net = build_network(spec.arch, spec.channels, spec.num_outputs, spec.arch_kwargs)
    net.train()
    net(torch.randn(8, spec.channels, spec.resolution, spec.resolution))  # non-trivial batch-norm statistics
    net.eval()
    clf.save_classifier(path, net, spec, dict(note="test"))
    return net


def _write_dataset(
    root,
    num_studies: int,
    seed: int,
    resolution: int = 16,
    label_mode: str = "abnormality",
    class_names=("normal", "abnormal"),
):
    """Two images per study; class k shows a central square brighter by 90 k / (K - 1), so the task is separable."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    labels, images = [], []
    for s in range(num_studies):
        label = s % len(class_names)
        for view in range(2):
            name = f"00000/img{2 * s + view:08d}.png"
            pixels = rng.normal(90, 20, (resolution, resolution))
            q = resolution // 4
            pixels[q:-q, q:-q] += 90 * label / (len(class_names) - 1)
            (root / "00000").mkdir(exist_ok=True)
            PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").save(root / name)
            labels.append([name, label])
            images.append(dict(file=name, image_id=f"im{2 * s + view}", study_id=f"st{s}", split="train"))
    meta = dict(label_mode=label_mode, class_names=list(class_names), images=images)
    (root / "dataset.json").write_text(json.dumps(dict(labels=labels, spinegan=meta)))
    return root


def _png_round_trip(img: torch.Tensor, tmp_path) -> torch.Tensor:
    """Save generator output as generate.py does (floor of clamp(x*127.5+128)) and read it back as uint8 NCHW."""
    pixels = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for i, arr in enumerate(pixels):
        mode = "L" if arr.shape[2] == 1 else "RGB"
        PIL.Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode).save(tmp_path / f"{i}.png")
        with PIL.Image.open(tmp_path / f"{i}.png") as loaded:
            back = np.asarray(loaded)
        out.append(back[None] if back.ndim == 2 else back.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


# ------------------------------------------------------------------------------------------------ classifier.pkl


def test_round_trip_gives_identical_outputs(tmp_path):
    net = _saved_classifier(tmp_path / "c.pkl")
    loaded = clf.load_classifier(tmp_path / "c.pkl")
    assert loaded.spec == _spec() and loaded.provenance == dict(note="test")
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[key], value), key
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    assert torch.equal(loaded(loaded.preprocess_uint8(x)), net(clf.uint8_to_input(x, _spec())))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pkl"]  # atomic write left no temp file


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("format", "spinegan-classifier-v0", "'format'"),
        ("label_mode", "multilabel", "'label_mode'"),
        ("class_names", ["a", "b", "c"], "'class_names'"),
        ("channels", 2, "'channels'"),
        ("intensity", dict(scale=1 / 255, mean=[0.4], std=[0.0]), "'intensity'"),
        ("thresholds", [0.5, 0.5], "'thresholds'"),
        ("arch", "vgg16", "'arch'"),
    ],
)
def test_tampered_fields_are_refused(tmp_path, field, value, message):
    _saved_classifier(tmp_path / "c.pkl")
    data = torch.load(tmp_path / "c.pkl", weights_only=True)
    data[field] = value
    torch.save(data, tmp_path / "bad.pkl")
    with pytest.raises(ValueError, match=f"bad.pkl: classifier.pkl field {message}"):
        clf.load_classifier(tmp_path / "bad.pkl")


def test_missing_field_and_wrong_weights_are_refused(tmp_path):
    _saved_classifier(tmp_path / "c.pkl")
    data = torch.load(tmp_path / "c.pkl", weights_only=True)
    torch.save({k: v for k, v in data.items() if k != "resolution"}, tmp_path / "a.pkl")
    with pytest.raises(ValueError, match="a.pkl: classifier.pkl field 'resolution' is missing"):
        clf.load_classifier(tmp_path / "a.pkl")
    data["state_dict"].pop("features.0.weight")
    torch.save(data, tmp_path / "b.pkl")
    with pytest.raises(ValueError, match="b.pkl: classifier.pkl field 'state_dict' does not fit"):
        clf.load_classifier(tmp_path / "b.pkl")


class _Payload:
    """Stands for arbitrary code in a pickle: weights_only loading must refuse it."""


def test_pickled_objects_and_garbage_are_refused(tmp_path):
    with open(tmp_path / "obj.pkl", "wb") as f:
        pickle.dump(dict(format=clf.FORMAT, payload=_Payload()), f, protocol=2)
    with pytest.raises(ValueError, match="obj.pkl: not a classifier.pkl: .*raw Python pickle"):
        clf.load_classifier(tmp_path / "obj.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pkl: not a classifier.pkl"):
        clf.load_classifier(tmp_path / "junk.pkl")


def test_loaded_classifier_is_frozen_and_stays_in_eval_mode(tmp_path):
    _saved_classifier(tmp_path / "c.pkl")
    loaded = clf.load_classifier(tmp_path / "c.pkl")
    parent = torch.nn.Sequential(loaded)
    parent.train()
    assert not loaded.training and not any(m.training for m in loaded.modules())
    assert not any(p.requires_grad for p in loaded.parameters())


# ------------------------------------------------------------------------------------------------ input mapping


@pytest.mark.parametrize(
    "gen_channels, gen_res, spec_channels, spec_res",
    [
        (1, 16, 1, 16),  # same size: no resampling
        (1, 32, 1, 16),  # generator at a higher resolution
        (1, 8, 1, 16),  # ... and a lower one
        (3, 16, 1, 16),  # RGB generator, gray classifier
        (1, 16, 3, 16),  # gray generator, RGB classifier
    ],
)
def test_generated_path_equals_png_round_trip(tmp_path, gen_channels, gen_res, spec_channels, spec_res):
    spec = _spec(
        channels=spec_channels,
        resolution=spec_res,
        intensity=dict(scale=1 / 255, mean=[0.4] * spec_channels, std=[0.2] * spec_channels),
    )
    img = torch.rand(3, gen_channels, gen_res, gen_res, generator=torch.Generator().manual_seed(1)) * 2.2 - 1.1
    from_png = clf.uint8_to_input(_png_round_trip(img, tmp_path), spec)
    from_generator = clf.generated_to_input(img, spec)
    assert from_generator.shape == (3, spec_channels, spec_res, spec_res)
    # The same uint8 levels mapped twice in float32 (scale, shift, divide by std: a few roundings on |x| < 3),
    # after a resize of up to 4-term sums on the generated path.
    torch.testing.assert_close(from_generator, from_png, rtol=0, atol=rounding_tol(torch.float32, 16, 3))


def _binomial_blur_reference(x: np.ndarray) -> np.ndarray:
    """float64 brute force: each output pixel sums the 25 weights b[i] b[j] / 256 over edge-clamped inputs."""
    b = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
    n, c, h, w = x.shape
    out = np.zeros_like(x)
    for r in range(h):
        for q in range(w):
            for i in range(5):
                for j in range(5):
                    rr, qq = min(max(r + i - 2, 0), h - 1), min(max(q + j - 2, 0), w - 1)
                    out[:, :, r, q] += b[i] * b[j] / 256 * x[:, :, rr, qq]
    return out


@pytest.mark.parametrize("input_norm", ["image", "blurred_image"])
def test_per_image_norms_match_a_float64_reference(input_norm):
    spec = _spec(channels=3, intensity=dict(scale=1 / 255, mean=[0.4] * 3, std=[0.2] * 3), input_norm=input_norm)
    pixels = torch.randint(0, 256, (2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).to(torch.float64)
    x = pixels.numpy() / 255
    if input_norm == "blurred_image":
        x = _binomial_blur_reference(x)
    mean = x.mean(axis=(2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=(2, 3), keepdims=True))
    got = clf.normalize_pixels(pixels.to(torch.float32), spec)
    # float32: 25-term blur sums and 256-term mean/variance sums on values below 1, then divided by a standard
    # deviation above 0.1 (x10) into results below 4
    torch.testing.assert_close(
        got.double(), torch.from_numpy(expected), rtol=0, atol=rounding_tol(torch.float32, 2 * 256 + 25, 4 * 10)
    )


@pytest.mark.parametrize("input_norm", ["image", "blurred_image"])
def test_per_image_norms_ignore_exposure_and_window(input_norm):
    # a*x + b with a > 0 (another exposure and display window) leaves a standardised image unchanged
    spec = _spec(input_norm=input_norm)
    pixels = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 100 + 50
    shifted = clf.normalize_pixels(pixels * 1.7 + 30, spec)
    # both sides: sums of up to 256 + 25 terms below 1, divided by a standard deviation above 0.1, results below 4
    torch.testing.assert_close(
        shifted, clf.normalize_pixels(pixels, spec), rtol=0, atol=rounding_tol(torch.float32, 2 * 256 + 25, 4 * 10)
    )
    flat = clf.normalize_pixels(torch.full((1, 1, 16, 16), 77.0), spec)
    assert torch.equal(flat, torch.zeros_like(flat))  # a flat image is centred, not divided by zero


def test_input_norm_round_trips_and_a_file_without_it_is_refused(tmp_path):
    spec = _spec(input_norm="blurred_image")
    _saved_classifier(tmp_path / "c.pkl", spec)
    assert clf.load_classifier(tmp_path / "c.pkl").spec == spec
    data = torch.load(tmp_path / "c.pkl", weights_only=True)
    torch.save({k: v for k, v in data.items() if k != "input_norm"}, tmp_path / "old.pkl")
    with pytest.raises(ValueError, match="old.pkl: classifier.pkl field 'input_norm' is missing"):
        clf.load_classifier(tmp_path / "old.pkl")
    data["input_norm"] = "histogram"
    torch.save(data, tmp_path / "bad.pkl")
    with pytest.raises(ValueError, match="bad.pkl: classifier.pkl field 'input_norm' must be one of"):
        clf.load_classifier(tmp_path / "bad.pkl")


@pytest.mark.parametrize("input_norm", ["image", "blurred_image"])
def test_generated_path_equals_png_round_trip_with_per_image_norms(tmp_path, input_norm):
    spec = _spec(input_norm=input_norm)
    img = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 2.2 - 1.1
    from_png = clf.uint8_to_input(_png_round_trip(img, tmp_path), spec)
    # the same uint8 levels standardised twice in float32 (sums of up to 256 + 25 terms below 1, divided by a
    # standard deviation above 0.1, results below 4)
    torch.testing.assert_close(
        clf.generated_to_input(img, spec), from_png, rtol=0, atol=rounding_tol(torch.float32, 2 * 256 + 25, 4 * 10)
    )


def test_generated_path_passes_gradients_straight_through():
    spec = _spec()
    img = torch.empty(1, 1, 16, 16).uniform_(-0.9, 0.9).requires_grad_()
    clf.generated_to_input(img, spec).sum().backward()
    # d/dimg of (img*127.5+128)/255/0.2 without the quantization
    torch.testing.assert_close(
        img.grad, torch.full_like(img, 127.5 / 255 / 0.2), rtol=rounding_tol(torch.float32, 4), atol=0
    )  # a product of 3 float32 factors


def test_intensity_mapping_closed_form():
    spec = _spec(resolution=4)
    x = torch.tensor([0, 51, 102, 255], dtype=torch.uint8).reshape(1, 1, 1, 4).repeat(1, 1, 4, 1)
    expected = (torch.tensor([0, 51, 102, 255]) / 255 - 0.4) / 0.2
    torch.testing.assert_close(
        clf.uint8_to_input(x, spec)[0, 0, 0], expected.float(), rtol=0, atol=rounding_tol(torch.float32, 4, 3)
    )  # scale, shift, divide on |x| < 3


def test_check_compatible():
    net = build_network("small_cnn", 1, 1, dict(width=4, num_blocks=2))
    binary = clf.SpineClassifier(net, _spec())
    clf.check_compatible(binary, "abnormality", 2, ["normal", "abnormal"])
    with pytest.raises(ValueError, match="label mode 'abnormality' vs the dataset's 'lesion'"):
        clf.check_compatible(binary, "lesion", 2)
    with pytest.raises(ValueError, match="2 classes vs conditioning labels of dimension 8"):
        clf.check_compatible(binary, "abnormality", 8)
    with pytest.raises(ValueError, match="class names"):
        clf.check_compatible(binary, "abnormality", 2, ["healthy", "sick"])


# ------------------------------------------------------------------------------------------------ models, augmentation


@pytest.mark.parametrize("arch", ["small_cnn", "patch_cnn", "resnet18", "densenet121"])
def test_architectures_take_gray_input(arch):
    net = build_network(arch, in_channels=1, num_outputs=3).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 32, 32)).shape == (2, 3)


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_backbones_train_channels_last_and_compute_the_same(arch):
    assert training_memory_format(arch) == torch.channels_last
    torch.manual_seed(0)
    net = build_network(arch, in_channels=1, num_outputs=2).double().eval()
    x = torch.randn(3, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = net(x)
        net = net.to(memory_format=training_memory_format(arch))
        first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
        # Only the order of float64 sums differs (a few thousand terms per output): far below 1e-9.
        torch.testing.assert_close(net(x), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch", ["small_cnn", "patch_cnn"])
def test_small_cnns_keep_the_default_layout(arch):
    assert training_memory_format(arch) == torch.contiguous_format


def test_patch_cnn_feature_sees_only_its_7x7_patch():
    # Two 3x3 stride-2 convolutions: position (j, j) of the last map reads input rows and columns 4j-3 .. 4j+3.
    torch.manual_seed(0)
    net = build_network("patch_cnn", 1, 1).eval()
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    net.features(x)[0, :, 3, 3].sum().backward()
    support = x.grad[0, 0].abs() > 0
    window = torch.zeros(32, 32, dtype=torch.bool)
    window[9:16, 9:16] = True
    assert torch.equal(support, window)


def test_patch_cnn_scores_the_strongest_patch():
    # Max pooling: adding a second copy of a finding elsewhere leaves the score as it was (an average would move).
    torch.manual_seed(1)
    net = build_network("patch_cnn", 1, 1).eval()
    finding = torch.randn(7, 7)
    one, two = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    one[0, 0, 9:16, 9:16] = finding
    two[0, 0, 9:16, 9:16] = finding
    two[0, 0, 21:28, 9:16] = finding  # 12 rows lower: the same features 3 map positions down; none sees both copies
    avg = build_network("patch_cnn", 1, 1, dict(pool="avg")).eval()
    avg.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net(two), net(one))
        assert not torch.allclose(avg(two), avg(one))
    with pytest.raises(ValueError, match="pool must be one of avg, max"):
        build_network("patch_cnn", 1, 1, dict(pool="median"))


def test_init_weights_from_local_file(tmp_path):
    import torchvision

    torch.manual_seed(3)
    stock = torchvision.models.resnet18(weights=None)
    torch.save(stock.state_dict(), tmp_path / "stock.pth")
    net = build_network("resnet18", 1, 1, init_weights=tmp_path / "stock.pth")
    torch.testing.assert_close(net.conv1.weight, stock.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(net.layer1[0].conv1.weight, stock.layer1[0].conv1.weight)
    assert net.fc.out_features == 1
    torch.save(dict(unrelated=torch.zeros(1)), tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong.pth: does not match torchvision ResNet"):
        build_network("resnet18", 1, 1, init_weights=tmp_path / "wrong.pth")


def test_augmentation_identity_and_flip_are_exact():
    x = torch.rand(3, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(augment_batch(x, g, 0.0, 0.0, (1.0, 1.0)), x)
    torch.testing.assert_close(augment_batch(x, g, 1.0, 0.0, (1.0, 1.0)), x.flip(3))


def test_augmentation_crop_stays_inside_and_is_seeded():
    x = torch.ones(64, 1, 16, 16)  # any sample outside the image would bring in black
    a = augment_batch(x, torch.Generator().manual_seed(5), 0.3, 0.0, (0.8, 1.0))
    b = augment_batch(x, torch.Generator().manual_seed(5), 0.3, 0.0, (0.8, 1.0))
    assert torch.equal(a, b)
    torch.testing.assert_close(a, x)
    rotated = augment_batch(x, torch.Generator().manual_seed(5), 0.0, 5.0, (1.0, 1.0))
    assert rotated.min() < 1  # rotation alone brings black corners in


# ------------------------------------------------------------------------------------------------ training, CLI


def test_load_labelled_images(tmp_path):
    root = _write_dataset(tmp_path / "ds", num_studies=3, seed=0)
    data = load_labelled_images(str(root))
    assert data.images.shape == (6, 1, 16, 16) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 1, 1, 0, 0]
    assert data.study_ids == ["st0", "st0", "st1", "st1", "st2", "st2"]
    assert (data.label_mode, data.class_names) == ("abnormality", ["normal", "abnormal"])
    bad = _write_dataset(tmp_path / "bad", num_studies=2, seed=0, label_mode="multilabel")
    with pytest.raises(ValueError, match="label_mode 'multilabel'"):
        load_labelled_images(str(bad))


def test_training_reaches_high_auc_and_keeps_the_best_validation_epoch(tmp_path):
    data = load_labelled_images(str(_write_dataset(tmp_path / "ds", num_studies=40, seed=0)))
    options = TrainOptions(
        arch_kwargs=dict(width=8, num_blocks=3),
        resolution=16,
        epochs=6,
        patience=6,
        batch_size=16,
        lr=3e-3,
        val_fraction=0.25,
        seed=1,
    )
    result = train_classifier(data, options)
    prov = result.provenance
    val_aucs = [h["val_auc"] for h in prov["history"]]
    # Highest validation AUC; among epochs that tie on it, the lowest validation loss.
    tied = [h for h in prov["history"] if h["val_auc"] == max(val_aucs)]
    assert prov["best_epoch"] == min(tied, key=lambda h: h["val_loss"])["epoch"]
    assert prov["best_val_auc"] == max(val_aucs)
    assert prov["best_val_auc"] > 0.95
    assert prov["num_train"] + prov["num_val"] == 80 and prov["num_val"] == 20  # 10 of 40 studies
    # The returned network is the best epoch's: recompute its validation AUC from the held-out studies.
    val_idx = [i for i, s in enumerate(data.study_ids) if s in _val_studies(data, prov)]
    probs = predict_probabilities(result.net, result.spec, data.images[val_idx]).numpy()
    assert validation_auc(data.labels[val_idx].numpy(), probs) == pytest.approx(prov["best_val_auc"], abs=1e-12)
    assert 0 < result.spec.thresholds[0] < 1
    again = train_classifier(data, dataclasses.replace(options, epochs=2, patience=2))
    third = train_classifier(data, dataclasses.replace(options, epochs=2, patience=2))
    for key, value in again.net.state_dict().items():
        assert torch.equal(third.net.state_dict()[key], value), key  # seeded and deterministic on CPU


def test_multiclass_training_and_round_trip(tmp_path):
    root = _write_dataset(tmp_path / "ds", num_studies=36, seed=0, label_mode="lesion", class_names=("a", "b", "c"))
    data = load_labelled_images(str(root))
    assert data.label_mode == "lesion" and data.labels.tolist()[:6] == [0, 0, 1, 1, 2, 2]
    options = TrainOptions(
        arch_kwargs=dict(width=8, num_blocks=3),
        resolution=16,
        epochs=5,
        patience=5,
        batch_size=16,
        lr=3e-3,
        val_fraction=0.34,
        seed=0,
    )
    result = train_classifier(data, options)
    assert result.spec.num_outputs == 3 and len(result.spec.thresholds) == 3
    assert result.provenance["best_val_auc"] > 0.9
    clf.save_classifier(tmp_path / "c.pkl", result.net, result.spec, result.provenance)
    loaded = clf.load_classifier(tmp_path / "c.pkl")
    probs = predict_probabilities(loaded, loaded.spec, data.images)
    assert probs.shape == (72, 3)
    torch.testing.assert_close(
        probs.sum(dim=1), torch.ones(72), rtol=0, atol=rounding_tol(torch.float32, 8)
    )  # softmax: exp, 3-term sums, division
    torch.testing.assert_close(probs, predict_probabilities(result.net, result.spec, data.images), rtol=0, atol=0)


def _val_studies(data, prov) -> set:
    from spine.data.splits import split_by_study

    _, val_idx = split_by_study(
        data.study_ids, data.labels.tolist(), prov["options"]["val_fraction"], prov["options"]["seed"]
    )
    return {data.study_ids[i] for i in val_idx}


def test_best_epoch_is_kept_and_patience_stops(tmp_path, monkeypatch):
    """Scripted validation AUCs: the network returned must be the one of the best epoch, not the last."""
    import spine.classifier.training as training

    data = load_labelled_images(str(_write_dataset(tmp_path / "ds", num_studies=12, seed=0)))
    scripted = iter([0.6, 0.9, 0.7, 0.85, 0.95, 0.99])
    snapshots = []

    def recording_predict(net, spec, images, batch_size):
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
        return predict_probabilities(net, spec, images, batch_size)

    monkeypatch.setattr(training, "predict_probabilities", recording_predict)
    monkeypatch.setattr(training, "validation_auc", lambda labels, probs: next(scripted))
    options = TrainOptions(
        arch_kwargs=dict(width=4, num_blocks=2),
        resolution=16,
        epochs=50,
        patience=2,
        batch_size=8,
        val_fraction=0.34,
        seed=0,
    )
    result = train_classifier(data, options)
    assert result.provenance["best_epoch"] == 1 and result.provenance["best_val_auc"] == 0.9
    assert result.provenance["epochs_run"] == 4  # epochs 2 and 3 did not beat epoch 1
    for key, value in result.net.state_dict().items():
        assert torch.equal(value, snapshots[1][key]), key
    assert any(not torch.equal(snapshots[3][k], snapshots[1][k]) for k in snapshots[1])


def test_chance_warning_and_auc_summary():
    assert "0.510 is near chance" in chance_warning(0.51)
    assert auc_summary(dict(task="binary", auc=0.8361, auc_ci=[0.7984, 0.8702])) == "AUC 0.836 (95% CI 0.798-0.870)"
    assert auc_summary(dict(task="multiclass", macro_auc=None, macro_auc_ci=None)).startswith("macro AUC undefined")


def test_cli_train_then_evaluate(tmp_path):
    train_root = _write_dataset(tmp_path / "train", num_studies=30, seed=0)
    test_root = _write_dataset(tmp_path / "test", num_studies=15, seed=1)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "train",
            "--data",
            str(train_root),
            "--out",
            str(tmp_path / "c.pkl"),
            "--epochs",
            "4",
            "--batch",
            "16",
            "--lr",
            "3e-3",
            "--seed",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    trained_auc = clf.load_classifier(tmp_path / "c.pkl").provenance["best_val_auc"]
    assert ("near chance" in result.output) == (trained_auc < 0.6), result.output
    result = runner.invoke(
        cli,
        [
            "evaluate",
            "--classifier",
            str(tmp_path / "c.pkl"),
            "--data",
            str(test_root),
            "--out",
            str(tmp_path / "eval.json"),
            "--roc",
            str(tmp_path / "roc.png"),
            "--n-resamples",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    loaded = clf.load_classifier(tmp_path / "c.pkl")
    test = load_labelled_images(str(test_root))
    probs = predict_probabilities(loaded, loaded.spec, test.images).numpy()
    assert report["auc"] == pytest.approx(roc_auc(test.labels.numpy(), probs), abs=1e-12)
    assert report["auc_ci"][0] <= report["auc"] <= report["auc_ci"][1]
    low, high = report["auc_ci"]
    unit = report["resampled"]  # what the interval resampled: the phantom's images carry study ids
    assert unit == ("studies" if any(test.study_ids) else "images")
    assert f"AUC {report['auc']:.3f} (95% CI {low:.3f}-{high:.3f}, over test {unit}) -> " in result.output
    assert report["at_threshold"]["threshold"] == loaded.spec.thresholds[0]
    assert set(report["youden"]) == {"threshold", "sensitivity", "specificity", "youden_j"}
    assert report["num_samples"] == 30 and report["data_sha256"] == test.sha256
    assert loaded.provenance["dataset_sha256"] == load_labelled_images(str(train_root)).sha256
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert math.isfinite(loaded.provenance["best_val_auc"])


# Bad inputs of `evaluate` and `train` -> (command and options, exit status, the distinctive part of the one error
# line); nothing may be written.
BAD_INPUTS = {
    "evaluate a raw pickle": (
        ["evaluate", "--classifier", "{code_pkl}"],
        1,
        "--classifier: {code_pkl}: not a classifier.pkl: expected a torch.save zip archive, found a raw Python pickle",
    ),
    "evaluate torch.save with code": (
        ["evaluate", "--classifier", "{code_zip}"],
        1,
        "names the Python global posix.system",
    ),
    "evaluate a text file": (["evaluate", "--classifier", "{text}"], 1, "not a classifier.pkl"),
    "evaluate a network snapshot": (
        ["evaluate", "--classifier", "{snapshot}"],
        1,
        "classifier.pkl field 'format' must be 'spinegan-classifier-v1'",
    ),
    "evaluate another label mode": (
        ["evaluate", "--classifier", "{lesion}"],
        1,
        "label mode 'lesion' vs the dataset's 'abnormality'",
    ),
    "evaluate on unlabelled data": (["evaluate", "--data", "{unlabelled}"], 1, "an unlabelled dataset"),
    "evaluate on mixed sizes": (["evaluate", "--data", "{mixed}"], 1, "img01.png: shape [1, 8, 8] (CHW) differs"),
    "train on unlabelled data": (["train", "--data", "{unlabelled}"], 1, "an unlabelled dataset"),
    "train on mixed sizes": (["train", "--data", "{mixed}"], 1, "img01.png: shape [1, 8, 8] (CHW) differs"),
    "train with too few studies": (["train", "--data", "{few}"], 1, "validation AUC needs two classes on each side"),
    "train small_cnn from weights": (["train", "--init-weights", "{text}"], 1, "applies to torchvision backbones"),
    "train a resnet from code": (
        ["train", "--arch", "resnet18", "--init-weights", "{code_zip}"],
        1,
        "--init-weights: {code_zip}: refusing to load it as a state dict",
    ),
    "seed out of range": (["train", "--seed", "-1"], 2, "-1 is not in the range 0<=x<=4294967295"),
    "train into a folder under a file": (["train", "--out", "{text}/c.pkl"], 1, "notes.txt is a file, not a folder"),
    "evaluate into a folder under a file": (
        ["evaluate", "--roc", "{text}/roc.png"],
        1,
        "notes.txt is a file, not a folder",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_cli_bad_inputs_get_one_line_and_write_nothing(tmp_path, case):
    import bad_inputs

    from training.networks import Generator
    from training.serialization import save_network_snapshot

    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=8,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )
    save_network_snapshot(tmp_path / "snapshot.pkl", G=None, D=None, G_ema=G)
    files = dict(
        text=bad_inputs.text_file(tmp_path / "notes.txt"),
        snapshot=tmp_path / "snapshot.pkl",
        code_zip=bad_inputs.torch_zip_with_code(tmp_path / "code.pt"),
        code_pkl=bad_inputs.pickle_with_code(tmp_path / "code.pkl"),
        lesion=bad_inputs.classifier_file(tmp_path / "lesion.pkl", ("a", "b", "c")),
        unlabelled=bad_inputs.write_images(tmp_path / "unlabelled", [16, 16]),
        mixed=bad_inputs.write_images(tmp_path / "mixed", [16, 8], [0, 1]),
        few=_write_dataset(tmp_path / "few", num_studies=2, seed=0),
    )
    changes, exit_code, message = BAD_INPUTS[case]
    command, changes = changes[0], changes[1:]
    options = {
        "--data": str(_write_dataset(tmp_path / "data", num_studies=6, seed=0)),
        "--out": str(tmp_path / "out" / "result"),
    }
    if command == "evaluate":
        options["--classifier"] = str(bad_inputs.classifier_file(tmp_path / "abnormality.pkl"))
    else:
        options["--epochs"] = "1"
    options.update(dict(zip(changes[::2], [value.format(**files) for value in changes[1::2]])))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(cli, [command, *[item for pair in options.items() for item in pair]])
    bad_inputs.assert_refused(result, message.format(**files), exit_code, tmp_path, before)


def test_saturated_validation_auc_is_broken_by_the_validation_loss(tmp_path, monkeypatch):
    """Scripted: the AUC saturates at 1.0 from the first epoch; the epoch with the lowest validation loss among the
    tied ones is kept (without the tie-break, a one-epoch model would be)."""
    import spine.classifier.training as training

    data = load_labelled_images(str(_write_dataset(tmp_path / "ds", num_studies=12, seed=0)))
    monkeypatch.setattr(training, "validation_auc", lambda labels, probs: 1.0)
    losses = iter([0.5, 0.3, 0.4, 0.2, 0.25, 0.3, 0.3])
    monkeypatch.setattr(training, "validation_loss", lambda labels, probs: next(losses))
    options = TrainOptions(
        arch_kwargs=dict(width=4, num_blocks=2),
        resolution=16,
        epochs=7,
        patience=3,
        batch_size=8,
        val_fraction=0.34,
        seed=0,
    )
    result = train_classifier(data, options)
    assert result.provenance["best_epoch"] == 3 and result.provenance["epochs_run"] == 7
    assert [h["val_loss"] for h in result.provenance["history"]] == [0.5, 0.3, 0.4, 0.2, 0.25, 0.3, 0.3]


def test_validation_loss_and_selection_rule_closed_form():
    from spine.classifier.training import improves, validation_loss

    assert validation_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert validation_loss(np.array([0, 2]), probs) == pytest.approx(-(np.log(0.7) + np.log(0.8)) / 2)
    assert validation_loss(np.array([1]), np.array([0.0])) == pytest.approx(-np.log(1e-7))  # clipped, finite
    assert improves(0.9, 5.0, 0.8, 0.1) and not improves(0.8, 0.0, 0.9, 5.0)
    assert improves(1.0, 0.2, 1.0, 0.3) and not improves(1.0, 0.3, 1.0, 0.3)


def test_evaluating_images_of_another_resolution_is_warned_of(tmp_path):
    import bad_inputs

    classifier = bad_inputs.classifier_file(tmp_path / "c.pkl", resolution=32)
    data = _write_dataset(tmp_path / "data", num_studies=6, seed=0, resolution=16)
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--classifier",
            str(classifier),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "eval.json"),
            "--n-resamples",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        f"Warning: --data={data} holds 16x16 images; the classifier was trained on 32x32 ones and "
        f"sees them resized, so its scores may not hold"
    ]
