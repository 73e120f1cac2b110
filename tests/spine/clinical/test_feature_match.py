"""Class feature matching: values against a float64 brute force, the unbiased gradient, the real statistics, and
the --clinical-match option through train.py."""

import os

import pytest
import torch
from test_clinical_training import invoke, write_classifier, write_dataset
from tolerances import rounding_tol
from torch import nn

import train
from spine.classifier.artifact import ClassifierSpec, SpineClassifier
from spine.classifier.features import judge_features
from spine.classifier.models import build_network
from spine.clinical.feature_match import ClassFeatureMatch, RealClassFeatures
from spine.clinical.loss import ClinicalLoss

SPEC = ClassifierSpec(
    arch="small_cnn",
    arch_kwargs=dict(width=4, num_blocks=2),
    label_mode="abnormality",
    class_names=("normal", "abnormal"),
    resolution=16,
    channels=1,
    intensity=dict(scale=1 / 255, mean=[0.5], std=[0.25]),
    thresholds=(0.5,),
)


def _judge() -> SpineClassifier:
    torch.manual_seed(0)
    net = build_network(SPEC.arch, SPEC.channels, SPEC.num_outputs, SPEC.arch_kwargs)
    net.train()
    net(torch.randn(16, 1, 16, 16) * 2 + 1)  # batch-norm statistics that are not the defaults
    return SpineClassifier(net, SPEC)


def _stats(dim: int, classes: int = 2, seed: int = 1) -> RealClassFeatures:
    g = torch.Generator().manual_seed(seed)
    return RealClassFeatures(
        torch.rand(classes, dim, generator=g), torch.rand(dim, generator=g) + 0.5, tuple([10] * classes)
    )


def _onehot(classes: list[int], num: int = 2) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(classes), num).float()


def test_judge_features_are_the_input_of_the_last_linear_layer():
    judge = _judge()
    x = torch.randn(5, 1, 16, 16)
    pooled = judge.net.features(x).mean(dim=(2, 3))  # small_cnn: global average pool, dropout (off), linear
    torch.testing.assert_close(judge_features(judge, x), pooled, rtol=0, atol=rounding_tol(torch.float32, 64, 10))
    torch.testing.assert_close(judge.net.head[-1](pooled), judge(x), rtol=0, atol=rounding_tol(torch.float32, 64, 10))


def test_per_sample_loss_equals_a_float64_brute_force():
    judge, stats, weight = _judge(), _stats(8), 0.7
    img = torch.rand(7, 1, 16, 16) * 2 - 1
    classes = [0, 1, 1, 0, 1, 0, 1]
    loss = ClassFeatureMatch(judge, stats, weight)(img, _onehot(classes))
    f = judge_features(judge, judge.preprocess_generated(img)).double()
    means, std = stats.means.double(), stats.std.double()
    expected = torch.zeros(7, dtype=torch.float64)
    for i, c in enumerate(classes):
        others = [j for j, k in enumerate(classes) if k == c and j != i]
        loo = torch.stack([(f[j] - means[c]) / std for j in others]).mean(0)
        expected[i] = weight * (loo * (f[i] - means[c]) / std).mean()
    torch.testing.assert_close(loss.double(), expected, rtol=0, atol=rounding_tol(torch.float32, 200, 10))


def test_an_image_alone_in_its_class_gets_no_loss():
    loss = ClassFeatureMatch(_judge(), _stats(8), 1.0)(torch.rand(4, 1, 16, 16) * 2 - 1, _onehot([0, 0, 0, 1]))
    assert loss[3] == 0 and bool((loss[:3] != 0).all())


def test_gradient_is_that_of_the_squared_class_mean_gap_without_a_spread_penalty():
    """With an identity judge (features = network input), each image's gradient is the deviation of the other
    same-class images from the real mean: when the generated class mean equals the real one, the gradients of a
    class sum to zero however spread the features are (a batch-mean squared error would shrink the spread)."""

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(4, 1)

        def forward(self, x):
            return self.out(x.flatten(1))

    spec = ClassifierSpec(
        arch="small_cnn",
        arch_kwargs={},
        label_mode="abnormality",
        class_names=("normal", "abnormal"),
        resolution=2,
        channels=1,
        intensity=dict(scale=1 / 255, mean=[0.5], std=[0.25]),
        thresholds=(0.5,),
    )
    judge = SpineClassifier(Identity(), spec)
    torch.manual_seed(0)
    img = (torch.rand(4, 1, 2, 2) * 1.6 - 0.8).requires_grad_(True)  # inside the judge's unclipped range
    classes = [0, 0, 1, 1]
    # Real class means equal to the generated ones: the class-mean gap is zero, the spread is not.
    f = judge_features(judge, judge.preprocess_generated(img)).detach()
    real = RealClassFeatures(torch.stack([f[:2].mean(0), f[2:].mean(0)]), torch.ones(4), (2, 2))
    ClassFeatureMatch(judge, real, 1.0)(img, _onehot(classes)).sum().backward()
    grads = img.grad.reshape(4, 4)
    tol = rounding_tol(torch.float32, 16, 100)
    torch.testing.assert_close(grads[0] + grads[1], torch.zeros(4), rtol=0, atol=tol)
    torch.testing.assert_close(grads[2] + grads[3], torch.zeros(4), rtol=0, atol=tol)
    assert float(grads.abs().min()) > 100 * tol  # single images do move (towards each other), the class mean does not


def test_real_class_features_are_per_class_means_and_the_overall_spread():
    judge = _judge()
    torch.manual_seed(3)
    images = torch.randint(0, 256, (10, 1, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0, 1] * 5)
    stats = RealClassFeatures.from_images(judge, images, labels, 2, batch_size=3)
    f = judge_features(judge, judge.preprocess_uint8(images)).double()
    tol = rounding_tol(torch.float32, 200, 10)
    torch.testing.assert_close(stats.means[1].double(), f[1::2].mean(0), rtol=0, atol=tol)
    assert stats.counts == (5, 5) and bool((stats.std >= f.std(0).float() - tol).all())
    with pytest.raises(ValueError, match="all 3 classes"):
        RealClassFeatures.from_images(judge, images, labels, 3)


def test_clinical_match_reaches_the_loss_alone_or_beside_the_clinical_loss(tmp_path, captured):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"))
    result = invoke(tmp_path, data, "--clinical-loss", pkl, "--clinical-weight", "0", "--clinical-match", "2")
    assert result.exit_code == 0, result.output
    args = captured[0]
    assert os.path.basename(args.run_dir).endswith("-clinical0-match2") and args.clinical["match"] == 2.0
    (term,) = train.build_plugins(args, "cpu").generator_terms
    assert isinstance(term, ClassFeatureMatch) and term.weight == 2.0 and term.real.counts == (4, 4)
    result = invoke(tmp_path, data, "--clinical-loss", pkl, "--clinical-match", "0.5")
    assert result.exit_code == 0, result.output
    kinds = [type(t) for t in train.build_plugins(captured[1], "cpu").generator_terms]
    assert kinds == [ClinicalLoss, ClassFeatureMatch]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--clinical-match", "-1"], "--clinical-match=-1.0: expected a weight >= 0"),
        (["--clinical-weight", "0"], "or 0 together with --clinical-match > 0"),
        (
            ["--clinical-match", "1", "--dp", "1", "--batch", "4", "--dp-noise-multiplier", "1"],
            "--clinical-match with --dp=1",
        ),
    ],
)
def test_bad_match_options_are_refused_before_training(tmp_path, captured, extra, message):
    data = write_dataset(str(tmp_path / "ds"))
    pkl = write_classifier(str(tmp_path / "c.pkl"))
    result = invoke(tmp_path, data, "--clinical-loss", pkl, *extra)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not captured
