"""spine.evaluation.model_memo: a kept model is found only by the same images and options, and comes back whole."""

import dataclasses

import torch
from test_downstream import write_dataset

from spine.classifier.data import load_labelled_images, predict_probabilities
from spine.classifier.training import TrainOptions, train_classifier
from spine.evaluation.model_memo import ModelMemo

OPTIONS = TrainOptions(epochs=2, patience=2, batch_size=16, seed=0)


def test_a_kept_model_comes_back_with_the_same_predictions_and_provenance(tmp_path):
    real = load_labelled_images(write_dataset(str(tmp_path / "real"), 20, seed=1))
    test = load_labelled_images(write_dataset(str(tmp_path / "test"), 12, seed=3))
    memo = ModelMemo(tmp_path / "memo")
    assert memo.get([real], OPTIONS) is None  # nothing kept yet
    model = train_classifier(real, OPTIONS)
    path = memo.put([real], OPTIONS, model)
    assert path.parent == tmp_path / "memo" and path.is_file()
    kept = memo.get([real], OPTIONS)
    assert kept.provenance == model.provenance and kept.spec == model.spec
    expected = predict_probabilities(model.net, model.spec, test.images)
    torch.testing.assert_close(predict_probabilities(kept.net, kept.spec, test.images), expected, rtol=0, atol=0)


def test_other_images_or_options_or_source_order_find_nothing(tmp_path):
    real = load_labelled_images(write_dataset(str(tmp_path / "real"), 20, seed=1))
    other = load_labelled_images(write_dataset(str(tmp_path / "other"), 20, seed=2, shift=2))
    memo = ModelMemo(tmp_path / "memo")
    memo.put([real, other], OPTIONS, train_classifier(real, OPTIONS))
    assert memo.get([real, other], OPTIONS) is not None
    assert memo.get([other, real], OPTIONS) is None
    assert memo.get([real], OPTIONS) is None
    assert memo.get([real, other], dataclasses.replace(OPTIONS, seed=1)) is None
    assert memo.get([real, other], dataclasses.replace(OPTIONS, input_norm="image")) is None
    renamed = dataclasses.replace(real, source="elsewhere.zip")  # the same images from another path
    assert memo.get([renamed, other], OPTIONS) is not None
