"""bench/gpu_benchmark.py: its configs are valid experiments (the GPU session's `finish` step checks them)."""

import dataclasses
import importlib.util
from pathlib import Path

from spine.pipeline.config import ExperimentConfig

_SPEC = importlib.util.spec_from_file_location(
    "gpu_benchmark", Path(__file__).resolve().parents[2] / "bench" / "gpu_benchmark.py"
)
gpu_benchmark = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gpu_benchmark)


def test_the_gpu_configs_pass_the_experiments_own_checks():
    for config in (gpu_benchmark.CONFIG, gpu_benchmark.TINY):
        again = ExperimentConfig.from_dict(config.to_dict())  # what a continued experiment reads back: checked
        assert dataclasses.asdict(again) == dataclasses.asdict(config)
        assert again.pools == () and [v.name for v in again.variants] == ["stylegan2-ada", "spinegan"]
