"""metrics.domain: spine-classifier penultimate features, Fréchet/PR in that space, and label fidelity."""

import pytest
import torch
from metrics_helpers import ReplayGenerator, tiny_generator
from tolerances import rounding_tol

import spine.evaluation.classifier_metrics  # noqa: F401 (registers the spine classifier with the metrics)
from metrics import metric_main
from metrics.domain import penultimate_features, spine_detector
from spine.classifier.artifact import ClassifierSpec, load_classifier, save_classifier
from spine.classifier.models import SmallCNN


@pytest.fixture
def classifier_file(tmp_path) -> str:
    torch.manual_seed(0)
    net = SmallCNN(1, 1, width=4, num_blocks=2).eval()
    spec = ClassifierSpec(
        arch="small_cnn",
        arch_kwargs=dict(width=4, num_blocks=2),
        label_mode="abnormality",
        class_names=("normal", "Abnormal X"),
        resolution=8,
        channels=1,
        intensity=dict(scale=1 / 255, mean=[0.5], std=[0.25]),
        thresholds=(0.5,),
    )
    path = str(tmp_path / "classifier.pkl")
    save_classifier(path, net, spec, provenance={})
    return path


def run(metric: str, G: torch.nn.Module, dataset: str, classifier: str) -> dict:
    kwargs = dict(class_name="training.dataset.ImageFolderDataset", path=dataset, use_labels=True, xflip=False)
    return metric_main.calc_metric(
        metric=metric,
        G=G,
        dataset_kwargs=kwargs,
        num_gpus=1,
        rank=0,
        device="cpu",
        classifier=classifier,
        progress=False,
        batch_size=5,
    )


def test_penultimate_features_are_the_input_of_the_last_linear_layer(classifier_file):
    classifier = load_classifier(classifier_file)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        manual = classifier.net.head[:-1](classifier.net.features(x))  # pool, flatten, dropout (eval: identity)
        features = penultimate_features(classifier, x)
        assert torch.equal(classifier.net.head[-1](features), classifier(x))  # the same float32 ops, run twice
    assert features.shape == (3, 8) and torch.equal(features, manual)


def test_spine_detector_uses_the_classifier_input_mapping(classifier_file):
    detector = spine_detector(classifier_file, torch.device("cpu"))
    images = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    classifier = load_classifier(classifier_file)
    expected = penultimate_features(classifier, (images.float() / 255 - 0.5) / 0.25)
    # The same float32 classifier on inputs mapped two ways (a few roundings apart), carried through its
    # convs (chains of ~1000 roundings) relative to the features' size.
    torch.testing.assert_close(
        detector(images), expected, rtol=0, atol=rounding_tol(torch.float32, 1000, expected.abs().max().item())
    )
    assert detector.name == "spine" and detector.key.startswith("spine:")


def test_frechet_and_pr_in_spine_space(dataset, classifier_file):
    perfect = run("fid12_full_spine", ReplayGenerator(dataset), dataset, classifier_file)
    assert abs(perfect.results.fid12_full_spine) < 1e-6 and "spine classifier" in perfect.detector
    assert run("fid12_full_spine", tiny_generator(), dataset, classifier_file).results.fid12_full_spine > 1e-4
    pr = run("pr121_full_spine", ReplayGenerator(dataset), dataset, classifier_file).results
    assert pr == {"pr121_full_spine_precision": 1.0, "pr121_full_spine_recall": 1.0}


def test_label_fidelity_reports_overall_and_per_class_values(dataset, classifier_file):
    results = run("label_fidelity4", tiny_generator(), dataset, classifier_file).results
    assert set(results) == {
        "label_fidelity4_accuracy",
        "label_fidelity4_auc",
        "label_fidelity4_normal_accuracy",
        "label_fidelity4_normal_auc",
        "label_fidelity4_abnormal_x_accuracy",
        "label_fidelity4_abnormal_x_auc",
    }
    # Half the samples are of each class, so the overall accuracy is the mean of the per-class ones.
    assert results["label_fidelity4_accuracy"] == pytest.approx(
        (results["label_fidelity4_normal_accuracy"] + results["label_fidelity4_abnormal_x_accuracy"]) / 2
    )


def test_spine_metrics_need_a_classifier(dataset):
    with pytest.raises(ValueError, match="needs a spine classifier.*--classifier"):
        run("fid4_spine", tiny_generator(), dataset, None)
