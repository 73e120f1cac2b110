"""spine.pipeline.demo: the configs are what the README promises; a tiny version of the whole story runs for real."""

import json

import pytest

from spine.pipeline import demo, experiment
from spine.pipeline.experiment import ExperimentConfig, Variant
from training.serialization import load_network_pkl


def test_demo_config_is_one_spinegan_on_the_phantom():
    config = demo.MODES["demo"]
    assert config.source is None and config.gan_cfg == "demo"
    assert [(v.name, v.clinical_weight) for v in config.variants] == [("spinegan", 0.1)]
    bench = demo.MODES["benchmark"]
    names = [v.name for v in bench.variants]
    assert names[:2] == ["stylegan2-ada", "spinegan"] and bench.kimg > config.kimg
    assert "spinegan-dp" in names


@pytest.mark.parametrize("mode, minutes", [("demo", 15), ("benchmark", 70)])
def test_the_demo_says_how_long_it_takes_before_starting(tmp_path, monkeypatch, mode, minutes):
    from click.testing import CliRunner

    def stop(*args, **kwargs):
        raise RuntimeError("stopped before the first step")
    monkeypatch.setattr(demo, "run_experiment", stop)
    result = CliRunner().invoke(demo.main, ["--outdir", str(tmp_path), "--mode", mode])
    assert isinstance(result.exception, RuntimeError)  # the estimate came before any work
    assert f"Expect about {minutes} minutes on 2 CPU cores in all" in result.output


def test_headline_numbers_name_every_model():
    out = dict(downstream=dict(aucs={"real": 0.9, "synthetic-spinegan": 0.8, "real+synthetic-spinegan": 0.91},
                               ratios={"synthetic-spinegan": 0.8 / 0.9}),
               classifier=dict(best_val_auc=0.95), **{"metrics/spinegan": dict(results=dict(fid500_full=41.5))})
    lines = demo.headline_numbers(out)
    assert "0.900" in lines[0] and "0.800" in lines[1] and "ratio to real 0.89" in lines[1]
    assert "0.910" in lines[2] and any("fid500_full: 41.5" in line for line in lines)


@pytest.mark.slow
def test_tiny_story_end_to_end_with_real_training(tmp_path):
    """Phantom -> import -> classifier -> train.py with the clinical loss -> synthesis -> metric -> downstream ->
    report, with the real train.py (1 kimg at 16x16)."""
    config = ExperimentConfig(phantom_train=48, phantom_test=24, phantom_size=64, resolution=16, classifier_epochs=2,
                              classifier_patience=1, kimg=1, snap=1, variants=(Variant("spinegan", 0.1),),
                              synth_per_class=8, metrics=("label_fidelity8",), downstream_epochs=1,
                              downstream_patience=1, n_resamples=20)
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    meta = load_network_pkl(out["train/spinegan"]["snapshot"])["metadata"]
    assert meta["clinical_loss"]["weight"] == 0.1 and meta["cur_nimg"] >= 1000
    options = json.loads(open(f"{out['train/spinegan']['run_dirs'][-1]}/training_options.json").read())
    assert options["clinical"]["classifier"] == out["classifier"]["classifier"]
    assert set(out["downstream"]["aucs"]) == {"real", "synthetic-spinegan", "real+synthetic-spinegan"}
    assert "Loss/G/clinical" in open(f"{out['train/spinegan']['run_dirs'][-1]}/stats.jsonl").read()
    assert "clinical loss" in open(out["report"]["report"]).read()
