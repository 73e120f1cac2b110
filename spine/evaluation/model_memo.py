"""Classifiers trained ahead, kept by what determines them: a downstream model is its training images and its options,
so a folder of finished models keyed by both lets `spine.evaluation.downstream.train_arms` take a model trained
earlier instead of training it again. The pipeline trains the real arms this way while a generator trains
(`spine.pipeline.experiment.ahead_steps`): no generator's images enter them.

Only what decides the weights enters the key (the images and labels as loaded, every training option); the thread
count does not, as it changes no more than the float-summation order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from spine.classifier.artifact import load_classifier, save_classifier
from spine.classifier.data import LabelledImages
from spine.classifier.training import TrainOptions, TrainResult


class ModelMemo:
    """A folder of classifier.pkl files named by `key`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(sources: Sequence[LabelledImages], options: TrainOptions) -> str:
        """What the model is trained on (each source's content hash, in order) and how."""
        text = json.dumps(
            dict(sources=[source.sha256 for source in sources], options=dataclasses.asdict(options)), sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, sources: Sequence[LabelledImages], options: TrainOptions) -> Path:
        return self.folder / f"classifier-{self.key(sources, options)}.pkl"

    def get(self, sources: Sequence[LabelledImages], options: TrainOptions) -> TrainResult | None:
        """The model trained on `sources` with `options`, if one was kept, else None."""
        path = self.path(sources, options)
        if not path.is_file():
            return None
        kept = load_classifier(path)
        return TrainResult(net=kept.net, spec=kept.spec, provenance=kept.provenance)

    def put(self, sources: Sequence[LabelledImages], options: TrainOptions, model: TrainResult) -> Path:
        """Keep `model` (written atomically); returns its file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(sources, options)
        save_classifier(path, model.net, model.spec, model.provenance)
        return path
