"""The clinical loss term (values, gradients, a classifier that never changes) and label fidelity."""

import dataclasses

import numpy as np
import pytest
import torch
from tolerances import rounding_tol
from torch import nn

from spine.classifier.artifact import ClassifierSpec, SpineClassifier, check_compatible
from spine.classifier.models import build_network
from spine.clinical.label_fidelity import label_fidelity
from spine.clinical.loss import ClinicalLoss

BINARY = ClassifierSpec(
    arch="small_cnn",
    arch_kwargs=dict(width=4, num_blocks=2),
    label_mode="abnormality",
    class_names=("normal", "abnormal"),
    resolution=16,
    channels=1,
    intensity=dict(scale=1 / 255, mean=[0.5], std=[0.25]),
    thresholds=(0.5,),
)
LESION = dataclasses.replace(BINARY, label_mode="lesion", class_names=("a", "b", "c"), thresholds=(0.3, 0.3, 0.3))


class StubGenerator(nn.Module):
    """G(z, c) -> tanh(linear) images in [-1, 1], following the generator contract (z_dim, c_dim, noise_mode)."""

    def __init__(self, z_dim=8, c_dim=2, resolution=32, channels=1):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, c_dim, resolution, channels
        self.fc = nn.Linear(z_dim + c_dim, channels * resolution * resolution)

    def forward(self, z, c, noise_mode="random"):
        assert noise_mode == "const"
        out = torch.tanh(self.fc(torch.cat([z, c], dim=1)))
        return out.reshape(-1, self.img_channels, self.img_resolution, self.img_resolution)


class ClassCodedGenerator(nn.Module):
    """Images whose brightness encodes the class (class k of K -> level -0.8 + 1.6 k / (K-1)), plus noise."""

    def __init__(self, c_dim, informative=True):
        super().__init__()
        self.z_dim, self.c_dim, self.informative = 4, c_dim, informative

    def forward(self, z, c, noise_mode="random"):
        assert noise_mode == "const"
        level = -0.8 + 1.6 * c.argmax(dim=1).float() / (self.c_dim - 1)
        if not self.informative:  # one constant image whatever the label or z
            return torch.zeros(len(z), 1, 16, 16)
        return (level[:, None, None, None] + 0.05 * z[:, :1, None, None]).expand(-1, 1, 16, 16)


class MeanBrightness(nn.Module):
    """Classifier net with known answers: logits from the mean network input (0 for mid-gray)."""

    def __init__(self, centres):
        super().__init__()
        self.register_buffer("centres", torch.tensor(centres))
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))[:, None]
        if len(self.centres) == 1:
            return self.scale * m
        return -self.scale * (m - self.centres) ** 2


def _trained_classifier(spec: ClassifierSpec) -> SpineClassifier:
    """A small CNN with non-default batch-norm statistics, wrapped as the frozen classifier."""
    torch.manual_seed(0)
    net = build_network(spec.arch, spec.channels, spec.num_outputs, spec.arch_kwargs)
    net.train()
    net(torch.randn(16, 1, 16, 16) * 2 + 1)
    return SpineClassifier(net, spec)


def _snapshot(module: nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_binary_term_equals_weighted_bce_of_the_abnormal_bit():
    classifier = _trained_classifier(BINARY)
    img = torch.rand(6, 1, 32, 32) * 2 - 1
    c = torch.eye(2)[torch.tensor([0, 1, 1, 0, 1, 0])]
    loss = ClinicalLoss(classifier, weight=0.1)(img, c)
    logit = classifier(classifier.preprocess_generated(img))[:, 0].double()
    y = c[:, 1].double()
    p = torch.sigmoid(logit)
    expected = -0.1 * (y * torch.log(p) + (1 - y) * torch.log(1 - p))
    assert loss.shape == (6,)
    # float32 BCE-with-logits against float64 from the same float32 logits: a few roundings relative to the loss.
    torch.testing.assert_close(
        loss.double(), expected, rtol=rounding_tol(torch.float32, 8), atol=rounding_tol(torch.float32, 8)
    )


def test_multiclass_term_equals_weighted_cross_entropy_of_argmax():
    classifier = _trained_classifier(LESION)
    img = torch.rand(5, 1, 16, 16) * 2 - 1
    c = torch.eye(3)[torch.tensor([0, 2, 1, 2, 0])]
    loss = ClinicalLoss(classifier, weight=0.5)(img, c)
    logits = classifier(classifier.preprocess_generated(img)).double()
    expected = -0.5 * torch.log_softmax(logits, dim=1)[torch.arange(5), torch.tensor([0, 2, 1, 2, 0])]
    # float32 log-softmax over 3 classes against float64 from the same logits (~8 roundings).
    torch.testing.assert_close(
        loss.double(),
        expected,
        rtol=rounding_tol(torch.float32, 8),
        atol=rounding_tol(torch.float32, 8, expected.abs().max().item()),
    )


def test_gradients_reach_the_generator_but_never_the_classifier():
    classifier = _trained_classifier(BINARY)
    G = StubGenerator()
    z, c = torch.randn(4, 8), torch.eye(2)[torch.tensor([0, 1, 0, 1])]
    img = G(z, c, noise_mode="const")
    img.retain_grad()
    ClinicalLoss(classifier)(img, c).mean().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert G.fc.weight.grad is not None and G.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in classifier.parameters())


def test_classifier_is_bit_identical_after_optimizing_a_generator():
    classifier = _trained_classifier(BINARY)
    G = StubGenerator()
    wrapper = nn.ModuleDict(dict(G=G, C=classifier))  # as if someone registered C inside a training module
    before = _snapshot(classifier)
    term = ClinicalLoss(classifier)
    optimizer = torch.optim.Adam(G.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(5):
        wrapper.train()
        wrapper.requires_grad_(True)  # a careless parent unfreezes everything; the term freezes C again
        z = torch.randn(8, 8, generator=generator)
        c = torch.eye(2)[torch.randint(0, 2, (8,), generator=generator)]
        loss = term(G(z, c, noise_mode="const"), c).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert not classifier.training
    after = _snapshot(classifier)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert all(p.grad is None for p in classifier.parameters())
    assert losses[-1] != losses[0]  # the generator did change


def _with_augmentation(spec, **options):
    classifier = _trained_classifier(spec)
    classifier.provenance = dict(options=options)  # as stored by spine.classifier.training
    return classifier


def test_augmented_judge_without_a_transform_equals_the_plain_judge():
    classifier = _with_augmentation(BINARY, flip_prob=0.0, max_rotate_deg=0.0, crop_scale=[1.0, 1.0])
    img = torch.rand(6, 1, 16, 16) * 2 - 1
    c = torch.eye(2)[torch.tensor([0, 1, 1, 0, 1, 0])]
    # The identity transform resamples the image (bilinear: 4-term sums) before the float32 classifier, whose
    # chains (convs of up to a few hundred terms) carry that rounding: ~1000 roundings relative to the loss.
    plain = ClinicalLoss(classifier)(img, c)
    torch.testing.assert_close(
        ClinicalLoss(classifier, augment=True)(img, c),
        plain,
        rtol=0,
        atol=rounding_tol(torch.float32, 1000, plain.abs().max().item()),
    )


def test_augmented_judge_sees_the_mirrored_image_when_every_image_is_flipped():
    classifier = _with_augmentation(LESION, flip_prob=1.0, max_rotate_deg=0.0, crop_scale=[1.0, 1.0])
    img = torch.rand(5, 1, 16, 16) * 2 - 1
    c = torch.eye(3)[torch.tensor([0, 2, 1, 2, 0])]
    expected = ClinicalLoss(classifier, weight=0.5)(img.flip(3), c)
    torch.testing.assert_close(
        ClinicalLoss(classifier, weight=0.5, augment=True)(img, c),
        expected,
        rtol=0,
        atol=rounding_tol(torch.float32, 1000, expected.abs().max().item()),
    )  # as above


def test_augmented_judge_draws_from_the_seeded_global_generator_and_passes_gradients():
    classifier = _with_augmentation(BINARY, flip_prob=0.3, max_rotate_deg=5.0, crop_scale=[0.8, 1.0])
    term = ClinicalLoss(classifier, augment=True)
    assert term.augment == dict(flip_prob=0.3, max_rotate_deg=5.0, crop_scale=(0.8, 1.0))
    assert term.snapshot_metadata()["clinical_loss"]["augment"] == term.augment
    img = (torch.rand(8, 1, 16, 16) * 2 - 1).requires_grad_(True)
    c = torch.eye(2)[torch.randint(0, 2, (8,))]
    torch.manual_seed(3)
    first = term(img, c)
    second = term(img, c)
    torch.manual_seed(3)
    again = term(img, c)
    assert torch.equal(first, again) and not torch.equal(first, second)
    first.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in classifier.parameters())


def test_augmentation_settings_default_to_the_classifier_training_defaults():
    term = ClinicalLoss(_trained_classifier(BINARY), augment=True)  # no provenance: an older classifier.pkl
    assert term.augment == dict(flip_prob=0.3, max_rotate_deg=5.0, crop_scale=(0.8, 1.0))
    assert ClinicalLoss(_trained_classifier(BINARY)).augment is None


def test_loss_refuses_wrong_labels_and_bare_networks():
    classifier = _trained_classifier(BINARY)
    with pytest.raises(ValueError, match=r"expected \[2, 2\] one-hot"):
        ClinicalLoss(classifier)(torch.zeros(2, 1, 16, 16), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="needs a SpineClassifier"):
        ClinicalLoss(nn.Linear(1, 1))


def test_mismatched_classifier_is_refused():
    binary, lesion = _trained_classifier(BINARY), _trained_classifier(LESION)
    check_compatible(binary, "abnormality", 2, ["normal", "abnormal"])
    check_compatible(lesion, "lesion", 3, ["a", "b", "c"])
    with pytest.raises(ValueError, match="label mode 'lesion' vs the dataset's 'abnormality'"):
        check_compatible(lesion, "abnormality", 2)
    with pytest.raises(ValueError, match="3 classes vs conditioning labels of dimension 8"):
        check_compatible(lesion, "lesion", 8)


def test_label_fidelity_known_answers():
    binary = SpineClassifier(MeanBrightness([0.0]), BINARY)
    perfect = label_fidelity(ClassCodedGenerator(2), binary, num_per_class=20, seed=0, batch_size=7)
    assert perfect["accuracy"] == 1.0 and perfect["auc"] == 1.0
    assert perfect["per_class"] == dict(normal=dict(accuracy=1.0, auc=1.0), abnormal=dict(accuracy=1.0, auc=1.0))
    # A generator that ignores its label: the classifier sees one kind of image, half the calls are wrong.
    blind = label_fidelity(ClassCodedGenerator(2, informative=False), binary, num_per_class=20, seed=0)
    assert blind["accuracy"] == 0.5
    assert blind["auc"] == 0.5 and blind["auc_ci"] == [0.5, 0.5]  # all scores tie
    assert sorted(a["accuracy"] for a in blind["per_class"].values()) == [0.0, 1.0]


def test_label_fidelity_multiclass_and_seeded():
    levels = [(-0.8 + 1.6 * k / 2) * 127.5 / 255 / 0.25 for k in range(3)]  # the network input of each level
    lesion = SpineClassifier(MeanBrightness(levels), LESION)
    result = label_fidelity(ClassCodedGenerator(3), lesion, num_per_class=10, seed=3)
    assert result["accuracy"] == 1.0 and result["auc"] == 1.0
    assert set(result["per_class"]) == {"a", "b", "c"}
    G = StubGenerator(c_dim=2, resolution=16)
    classifier = _trained_classifier(BINARY)
    a = label_fidelity(G, classifier, num_per_class=12, seed=5)
    b = label_fidelity(G, classifier, num_per_class=12, seed=5)
    assert a == b and a["num_per_class"] == 12
    with pytest.raises(ValueError, match="dimension 3"):
        label_fidelity(StubGenerator(c_dim=3), classifier, num_per_class=2)
    assert np.isfinite(a["accuracy"])
