"""The one-shot DP release of class-mean judge features: the released means against a float64 brute force of the
clipped features, the noise's scale, its entry in the judge's account, and class feature matching under DP through
train.py (the release required, the run's data public)."""

import pytest
import torch
from click.testing import CliRunner
from test_judge import invoke_train, separable_images
from tolerances import rounding_tol

import train
from spine.classifier.artifact import SpineClassifier, load_classifier, save_classifier
from spine.classifier.features import clip_features, judge_features
from spine.clinical.feature_match import ClassFeatureMatch, RealClassFeatures
from spine.dp import accounting, class_features, judge


@pytest.fixture(scope="module")
def trained() -> judge.TrainResult:
    options = judge.PrivateJudgeOptions(epsilon=4.0, delta=1e-3, epochs=1, batch_size=8, resolution=16)
    return judge.train_private_judge(separable_images(), options)


def test_clip_features_bounds_each_row_and_keeps_short_ones():
    rows = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64)
    clipped = clip_features(rows, 1.0)
    torch.testing.assert_close(clipped, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64))


def test_released_means_are_the_clipped_class_means_when_the_noise_vanishes(trained):
    data = separable_images()
    classifier = SpineClassifier(trained.net, trained.spec)
    release = class_features.release_class_features(classifier, data, clip=0.5, noise_multiplier=1e-12, seed=0)
    with torch.no_grad():
        feats = judge_features(classifier, classifier.preprocess_uint8(data.images)).double()
    assert feats.norm(dim=1).max() > 0.5  # the clip binds for some image
    clipped = feats * torch.clamp(0.5 / feats.norm(dim=1, keepdim=True), max=1.0)
    means = torch.tensor(release["means"], dtype=torch.float64)
    for c in (0, 1):
        expected = clipped[data.labels == c].mean(0)
        torch.testing.assert_close(means[c], expected, rtol=0, atol=rounding_tol(torch.float32, 64, 1.0))
    assert release["counts"] == pytest.approx([20, 20], abs=1e-9) and release["clip"] == 0.5


def test_the_release_noise_has_the_gaussian_mechanisms_scale(trained):
    """Sums and counts carry N(0, (sigma sqrt(2) C)^2) per coordinate: the spread of the released counts (count
    coordinate scaled by C) over 200 seeds, against its closed form (5 standard errors)."""
    data = separable_images()
    classifier = SpineClassifier(trained.net, trained.spec)
    sigma, clip = 3.0, 0.5
    counts = torch.tensor(
        [class_features.release_class_features(classifier, data, clip, sigma, seed=s)["counts"] for s in range(200)]
    )
    expected = sigma * 2**0.5  # the count's noise in images: sigma sqrt(2) C / C
    spread = (counts - 20).pow(2).mean().sqrt().item()  # 400 draws: relative standard error 1/sqrt(800)
    assert abs(spread / expected - 1) < 5 / 800**0.5
    again = class_features.release_class_features(classifier, data, clip, sigma, seed=7)
    assert again == class_features.release_class_features(classifier, data, clip, sigma, seed=7)


def test_the_release_is_one_more_mechanism_in_the_judges_account(trained):
    data = separable_images()
    options = judge.PrivateJudgeOptions(
        epsilon=4.0, delta=1e-3, epochs=1, batch_size=8, resolution=16, release_features=5.0, release_clip=0.5
    )
    released = judge.add_feature_release(trained, data, options)
    privacy = released.provenance["privacy"]
    assert privacy["history"] == [*trained.provenance["privacy"]["history"], [5.0, 1.0, 1]]
    assert privacy["epsilon"] == accounting.composed_epsilon(tuple(map(tuple, privacy["history"])), 1e-3, "rdp")
    assert privacy["epsilon"] > trained.provenance["privacy"]["epsilon"]
    assert trained.provenance["privacy"]["history"] != privacy["history"]  # the judge's own result is untouched
    assert len(released.provenance["class_features"]["means"]) == 2


def test_release_options_are_checked():
    with pytest.raises(ValueError, match="--release-features=-1.0"):
        judge.PrivateJudgeOptions(epsilon=1.0, delta=1e-3, release_features=-1.0)


@pytest.fixture
def released_judge(tmp_path, dp_dataset) -> str:
    out = str(tmp_path / "judge-released.pkl")
    args = ["--data", dp_dataset, "--out", out, "--epsilon", "2", "--delta", "1e-3", "--epochs", "1", "--batch", "4"]
    result = CliRunner().invoke(judge.main, [*args, "--release-features", "4", "--release-clip", "2"])
    assert result.exit_code == 0, result.output
    assert "plus the class-feature release (sigma 4)" in result.output
    return out


def test_class_feature_matching_under_dp_takes_the_release(tmp_path, monkeypatch, dp_dataset, released_judge):
    public = ("--dp-data-public", "1", "--clinical-loss", released_judge, "--clinical-match", "1")
    result, args = invoke_train(tmp_path, monkeypatch, dp_dataset, *public)
    assert result.exit_code == 0, result.output
    assert args.clinical["match_released"] is True
    history = load_classifier(released_judge).provenance["privacy"]["history"]
    assert args.dp["composed_with"] == [["judge:0", *history[0]], ["judge:1", 4.0, 1.0, 1]]
    match = [t for t in train.build_plugins(args, "cpu").generator_terms if isinstance(t, ClassFeatureMatch)]
    released = load_classifier(released_judge).provenance["class_features"]
    assert match[0].real.clip == 2.0
    torch.testing.assert_close(match[0].real.means, torch.tensor(released["means"], dtype=torch.float32))


def test_class_feature_matching_under_dp_is_refused_without_a_release_or_public_data(
    tmp_path, monkeypatch, dp_dataset, released_judge
):
    unreleased = str(tmp_path / "judge.pkl")
    classifier = load_classifier(released_judge)
    provenance = {k: v for k, v in classifier.provenance.items() if k != "class_features"}
    save_classifier(unreleased, classifier.net, classifier.spec, provenance)
    for extra, message in [
        (("--dp-data-public", "1", "--clinical-loss", unreleased), "carries no DP release of the class means"),
        (("--dp-epsilon", "8", "--clinical-loss", released_judge), "needs --dp-data-public=1"),
    ]:
        result, _ = invoke_train(tmp_path, monkeypatch, dp_dataset, *extra, "--clinical-match", "1")
        assert result.exit_code != 0 and message in result.output, result.output


def test_matching_clips_the_generated_features_like_the_release(trained):
    """With a release's clip, the generated images' features are clipped before the leave-one-out product (the
    module's formula by hand; each class twice in the batch, so each image's other is the other of its class)."""
    classifier = SpineClassifier(trained.net, trained.spec)
    images = separable_images(8).images
    width = judge_features(classifier, classifier.preprocess_uint8(images[:1])).shape[1]
    release = dict(means=[[0.0] * width, [1e-4] * width], counts=[4.0, 4.0], clip=1e-3)
    stats = RealClassFeatures.from_release(classifier, release, images)
    img = torch.rand(4, 1, 16, 16) * 2 - 1
    labels = [0, 1, 0, 1]
    loss = ClassFeatureMatch(classifier, stats, 1.0)(img, torch.eye(2)[labels])
    with torch.no_grad():
        feats = clip_features(judge_features(classifier, classifier.preprocess_generated(img)), 1e-3)
    assert feats.norm(dim=1).max() <= 1e-3 * (1 + 1e-5)
    deviation = (feats - stats.means[labels]) / stats.std
    other = deviation[[2, 3, 0, 1]]
    torch.testing.assert_close(loss.detach(), (other * deviation).mean(1), rtol=1e-5, atol=1e-12)
