"""spine.pipeline.experiment: finished steps are skipped on restart, unfinished ones start clean, configs are
checked."""

import dataclasses
import json
import multiprocessing
import os
import threading
import time

import pytest
import torch

from spine.classifier.artifact import load_classifier
from spine.evaluation.class_means import REFERENCE, REFERENCE_HALVES, load_means
from spine.pipeline import experiment, report
from spine.pipeline.config import DP_VARIANT, ExperimentConfig, Pool, Variant, downstream_options
from spine.pipeline.steps import Steps
from training.dataset import ImageFolderDataset
from training.networks import Generator
from training.serialization import load_network_pkl, save_network_snapshot


def test_steps_skip_finished_and_restart_unfinished(tmp_path):
    calls = []

    def first(workdir):
        calls.append("first")
        (workdir / "out.txt").write_text("ok")
        return dict(value=1)

    def interrupted(workdir):
        calls.append("second")
        (workdir / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    steps = Steps(tmp_path, log=lambda _text: None)
    assert steps.run("a", first) == dict(value=1)
    with pytest.raises(KeyboardInterrupt):
        steps.run("b/x", interrupted)
    assert steps.marker("a").is_file() and not steps.marker("b/x").is_file() and (tmp_path / "b/x/partial.txt").exists()

    again = Steps(tmp_path, log=lambda _text: None)
    assert again.run("a", first) == dict(value=1)  # read back from the marker
    assert again.run("b/x", lambda w: dict(files=sorted(os.listdir(w)))) == dict(files=[])  # clean workdir
    assert calls == ["first", "second"]
    kept = Steps(tmp_path, log=lambda _text: None)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "checkpoint.pt").write_text("resume me")
    listed = kept.run("c", lambda w: dict(files=sorted(os.listdir(w))), keep_partial=True)
    assert listed == dict(files=["checkpoint.pt"])


TINY = ExperimentConfig(
    phantom_train=40,
    phantom_test=24,
    phantom_size=64,
    resolution=16,
    classifier_epochs=2,
    classifier_patience=2,
    kimg=1,
    snap=1,
    variants=(Variant("plain"), Variant("spinegan", 0.1)),
    synth_per_class=6,
    metrics=("label_fidelity8",),
    downstream_epochs=1,
    downstream_patience=1,
    n_resamples=20,
    seed=0,
)


def tiny_generator(resolution: int) -> Generator:
    """A conditional 2-class G small enough to synthesise in milliseconds."""
    return Generator(
        z_dim=8,
        c_dim=2,
        w_dim=8,
        img_resolution=resolution,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )


def fake_train_variant(calls, kimgs=(1,)):
    """Stands in for train.py (minutes on CPU): writes a tiny conditional snapshot at each of `kimgs` (other weights
    at each) into a run folder."""

    def train(variant, train_zip, classifier, config, workdir, log, env=None, start=None, public_reals=None):
        calls.append(variant.name)
        run_dir = workdir / "00000-fake"
        run_dir.mkdir()
        torch.manual_seed(len(calls))
        for kimg in kimgs:
            G = tiny_generator(config.resolution)
            snapshot = run_dir / f"network-snapshot-{kimg:06d}.pkl"
            save_network_snapshot(snapshot, G=G, D=None, G_ema=G, metadata=dict(cur_nimg=kimg * 1000))
        with open(run_dir / "stats.jsonl", "w") as f:
            for kimg in (0.5, 1.0):
                f.write(json.dumps({"Progress/kimg": {"mean": kimg}, "Loss/G/loss": {"mean": 1.0 / kimg}}) + "\n")
        cmd = experiment.train_command(variant, train_zip, classifier, config, workdir, start, public_reals)
        return dict(run_dirs=[str(run_dir)], snapshot=str(snapshot), command=cmd[1:])

    return train


def test_interrupted_experiment_continues_where_it_stopped(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant(calls))
    real_downstream = experiment._downstream

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "_downstream", interrupt)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(TINY, tmp_path, log=lambda _text: None)
    done = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert done == [
        "classifier.json",
        "data--test.json",
        "data--train.json",
        "judge.json",
        "metrics--plain.json",
        "metrics--spinegan.json",
        "phantom.json",
        "provenance.json",
        "synthesize--plain.json",
        "synthesize--spinegan.json",
        "train--plain.json",
        "train--spinegan.json",
    ]

    monkeypatch.setattr(experiment, "_downstream", real_downstream)
    monkeypatch.setattr(experiment, "make_phantom", lambda *a: pytest.fail("finished step ran again"))
    monkeypatch.setattr(experiment, "train_classifier_step", lambda *a: pytest.fail("finished step ran again"))
    logged = []
    out = experiment.run_experiment(TINY, tmp_path, log=logged.append)
    assert calls == ["plain", "spinegan"]
    assert sum("done earlier" in line for line in logged) == 12  # the 12 markers above, provenance included
    assert set(out["downstream"]["aucs"]) == {
        "real",
        "synthetic-plain",
        "real+synthetic-plain",
        "synthetic-spinegan",
        "real+synthetic-spinegan",
    }
    assert os.path.isfile(out["report"]["report"])
    metrics = out["metrics/spinegan"]
    own = {k for k in metrics["results"] if k.startswith("label_fidelity8")}
    independent = {k for k in metrics["results"] if k.startswith("independent_label_fidelity8")}
    assert metrics["errors"] == {} and own and independent == {"independent_" + k for k in own}
    assert all(0 <= v <= 1 for v in metrics["results"].values())
    judges = [
        torch.load(out[step]["classifier"], weights_only=True)["provenance"]["options"]["seed"]
        for step in ("classifier", "judge")
    ]
    assert judges == [TINY.seed, TINY.seed + 1]
    meta = load_network_pkl(out["train/spinegan"]["snapshot"])["metadata"]
    assert meta["cur_nimg"] == 1000
    command = out["train/spinegan"]["command"]
    assert "--clinical-weight=0.1" in command and not any("clinical" in a for a in out["train/plain"]["command"])


def test_a_trajectory_pool_draws_each_generators_images_from_its_last_snapshots(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant([], kimgs=(0, 1, 2)))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "metrics_variant", interrupt)
    config = dataclasses.replace(TINY, kimg=2, synth_snapshots=2, variants=(Variant("plain"),))
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    step = json.loads((tmp_path / "steps" / "synthesize--plain.json").read_text())["outputs"]
    assert [os.path.basename(p) for p in step["snapshots"]] == [
        "network-snapshot-000001.pkl",
        "network-snapshot-000002.pkl",
    ]
    meta = ImageFolderDataset(step["dataset"], use_labels=True).metadata
    assert meta["generator"]["kimg"] == [1, 2] and meta["class_counts"] == {"normal": 6, "abnormal": 6}
    assert [e["snapshot"] for e in meta["images"]] == [0, 1, 0, 1, 0, 1] * 2


def test_a_trajectory_pool_is_measured_on_its_own_images_as_well_as_its_final_snapshot(tmp_path, monkeypatch):
    """The set metrics of a pooled arm read the very images its downstream classifiers learn from: here a pool
    standing in for the training images themselves, so its precision and recall are exactly 1 in both judges'
    features (a set against itself), where the final snapshot's are the generator's own."""
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant([], kimgs=(0, 1, 2)))
    pools, pool = [], str(tmp_path / "data" / "train" / "train16.zip")

    def training_images_as_the_pool(snapshots, class_names, label_mode, config, workdir):
        pools.append([os.path.basename(p) for p in snapshots])
        return dict(dataset=pool, snapshots=list(snapshots))

    monkeypatch.setattr(experiment, "synthesize_variant", training_images_as_the_pool)
    config = dataclasses.replace(
        TINY, kimg=2, synth_snapshots=2, variants=(Variant("plain"),), metrics=("pr63_spine", "label_fidelity8")
    )
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert pools == [["network-snapshot-000001.pkl", "network-snapshot-000002.pkl"]]
    pooled = out["set-metrics/plain"]["results"]
    for prefix in ("", "independent_"):
        assert pooled[prefix + "pr63_spine_precision"] == pooled[prefix + "pr63_spine_recall"] == 1.0
    assert "label_fidelity8_accuracy" not in pooled  # conditions G: the final snapshot's alone
    assert "label_fidelity8_accuracy" in out["metrics/plain"]["results"]
    line = json.loads((tmp_path / "set-metrics" / "plain" / "metric-pr63_spine.jsonl").read_text())
    assert line["data2"] == pool
    page = (tmp_path / "report" / "index.html").read_text()
    assert "plain: the 2 snapshots&#x27; images" in page


def test_a_single_snapshot_has_no_set_metrics_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant([]))
    config = dataclasses.replace(TINY, variants=(Variant("plain"),), metrics=("pr63_spine",))
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert "metrics/plain" in out and not any(key.startswith("set-metrics") for key in out)


def test_downstream_arms_use_the_judges_architecture_and_normalisation():
    config = dataclasses.replace(TINY, classifier_arch="patch_cnn", classifier_input_norm="blurred_image")
    options = downstream_options(config)
    assert (options.arch, options.input_norm) == ("patch_cnn", "blurred_image")
    assert (options.epochs, options.patience, options.seed) == (1, 1, 0)


def test_a_config_written_before_a_new_key_is_the_same_config(tmp_path):
    older = TINY.to_dict()
    del older["independent_judge"]  # written by a version without this key; its default applies
    (tmp_path / "config.json").write_text(json.dumps(older))
    experiment._check_same_config(TINY, tmp_path)
    with pytest.raises(Exception, match=r"differs in \['independent_judge'\]"):
        experiment._check_same_config(dataclasses.replace(TINY, independent_judge=False), tmp_path)


def test_restart_with_another_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_dict()))
    other = ExperimentConfig.from_dict(dict(TINY.to_dict(), kimg=2))
    with pytest.raises(Exception, match=r"differs in \['kimg'\]"):
        experiment.run_experiment(other, tmp_path, log=lambda _text: None)


def test_train_command_continues_the_latest_checkpoint(tmp_path):
    for run in ("00000-a", "00001-a"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "checkpoint.pt").write_text("")
    cmd = experiment.train_command(Variant("dp", 0.0, ("--dp=1",)), "t.zip", "c.pkl", TINY, tmp_path)
    assert cmd[-2:] == ["--dp=1", f"--resume={tmp_path}/00001-a/checkpoint.pt"]
    assert "--kimg=1" in cmd and "--cond=1" in cmd and not any("clinical" in a for a in cmd)


def test_a_shorter_variant_may_draw_from_fewer_snapshots_of_its_own():
    config = ExperimentConfig.from_dict(
        dict(kimg=20, snap=5, synth_snapshots=5, variants=[dict(name="a"), dict(name="b", kimg=10, synth_snapshots=3)])
    )
    assert [config.synth_snapshots_of(v) for v in config.variants] == [5, 3]
    assert ExperimentConfig.from_dict(config.to_dict()) == config  # the override survives the round trip


@pytest.mark.parametrize(
    "data, message",
    [
        (dict(kimgs=3), "unknown key(s) ['kimgs']"),
        (dict(variants=[dict(name="a"), dict(name="a")]), "distinct names"),
        (dict(variants=[dict(name="a", weight=1)]), "variants[0]: unknown key(s) ['weight']"),
        (dict(resolution=24), "power of two"),
        (dict(classifier_input_norm="histogram"), "classifier_input_norm: expected one of"),
        (dict(classifier_arch="vgg16"), "classifier_arch: expected one of"),
        (dict(pools=[dict(name="p", members=["stylegan2-ada"])]), "pools[0].members: expected two or more distinct"),
        (dict(pools=[dict(name="p", members=["spinegan", "spinegan"])]), "pools[0].members: expected two or more"),
        (dict(pools=[dict(name="p", members=["spinegan", "gan"])]), "pools[0].members: expected two or more"),
        (dict(pools=[dict(name="spinegan", members=["spinegan", "stylegan2-ada"])]), "pools[0].name: expected a name"),
        (
            dict(
                pools=[
                    dict(name="p", members=["spinegan", "stylegan2-ada"]),
                    dict(name="p", members=["spinegan", "spinegan-dp"]),
                ]
            ),
            "pools[0].name: expected a name",
        ),
        (dict(pools=[dict(name="p", members="spinegan")]), "pools[0]: expected {'name': str, 'members'"),
        (
            dict(
                variants=[dict(name="a"), dict(name="b", labels="lesion")], pools=[dict(name="p", members=["a", "b"])]
            ),
            "pools[0].members: variants of different label modes",
        ),
        (dict(synth_local_difference=0), "config.synth_local_difference: expected a fraction in (0, 1]"),
        (dict(class_reference=-1), "config.class_reference: expected 0, or a number of phantom images"),
        (dict(class_reference=100, source="/data/vindr"), "with source '/data/vindr'"),
        (dict(synth_local_difference=1.5), "config.synth_local_difference: expected a fraction in (0, 1]"),
        (dict(synth_noise_mode="fresh"), "config.synth_noise_mode: expected one of ['const', 'random', 'none']"),
        (dict(synth_twins="no"), "config.synth_twins: expected true or false, got 'no'"),
        (dict(synth_snapshots=0), "config.synth_snapshots: expected 1 to 5 (snapshots every 5 ticks of"),
        (
            dict(kimg=20, snap=5, variants=[dict(name="a"), dict(name="b", kimg=10)], synth_snapshots=4),
            "config.synth_snapshots: expected 1 to 3 (snapshots every 5 ticks of b's 10 kimg), got 4",
        ),
        (
            dict(kimg=20, snap=5, variants=[dict(name="a"), dict(name="b", kimg=10, synth_snapshots=4)]),
            "config.variants[1].synth_snapshots: expected 1 to 3 (snapshots every 5 ticks of b's 10 kimg), got 4",
        ),
        (dict(variants=[dict(name="a", synth_snapshots=0)]), "variants[0].synth_snapshots: expected an integer >= 1"),
        (dict(variants=[dict(name="a", synth_snapshots=True)]), "variants[0].synth_snapshots: expected an integer"),
    ],
)
def test_bad_configs_are_refused_by_name(data, message):
    with pytest.raises(ValueError) as info:
        ExperimentConfig.from_dict(data)
    assert message in str(info.value)


# Bad command lines -> (options, exit status, the distinctive part of the one error line); nothing may be written.
BAD_INPUTS = {
    "config not JSON": (["--config", "{text}"], 1, "not a readable JSON file"),
    "config not an object": (["--config", "{json_list}"], 1, "expected a JSON object"),
    "config with an unknown key": (["--config", "{json_typo}"], 1, "unknown key(s) ['kimgs']"),
    "resolution not a power of two": (["--resolution", "24"], 1, "expected a power of two >= 8, got 24"),
    "unknown variant": (["--variants", "gan"], 2, "'gan': expected some of"),
    "negative seed": (["--seed", "-1"], 2, "-1 is not in the range 0<=x<=4294967295"),
    "another experiment's folder": (["--outdir", "{other}", "--kimg", "7"], 1, "with a different config"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_cli_bad_inputs_get_one_line_and_write_nothing(tmp_path, case):
    import bad_inputs
    from click.testing import CliRunner

    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "typo.json").write_text(json.dumps(dict(kimgs=3)))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps(TINY.to_dict()))
    files = dict(
        text=bad_inputs.text_file(tmp_path / "notes.txt"),
        json_list=tmp_path / "list.json",
        json_typo=tmp_path / "typo.json",
        other=tmp_path / "other",
    )
    changes, exit_code, message = BAD_INPUTS[case]
    options = {"--outdir": str(tmp_path / "exp")}
    options.update(dict(zip(changes[::2], [value.format(**files) for value in changes[1::2]])))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(experiment.main, [item for pair in options.items() for item in pair])
    bad_inputs.assert_refused(result, message, exit_code, tmp_path, before)


def test_generators_train_in_parallel_sharing_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    both_running = threading.Barrier(2, timeout=60)  # broken (an error) unless the two trainings overlap
    seen = []

    def train(variant, train_zip, classifier, config, workdir, log, env=None, start=None, public_reals=None):
        both_running.wait()
        seen.append((variant.name, train_zip, env["OMP_NUM_THREADS"]))
        return dict(snapshot=f"{variant.name}.pkl")

    monkeypatch.setattr(experiment, "train_variant", train)
    data = {"abnormality": dict(train="a.zip", classifier="a.pkl"), "lesion": dict(train="l.zip", classifier="l.pkl")}
    config = dataclasses.replace(TINY, variants=(Variant("plain"), Variant("lesion", labels="lesion")))
    out = experiment.train_variants(Steps(tmp_path), config, data, lambda _text: None, parallel=2)
    assert out == {"train/plain": dict(snapshot="plain.pkl"), "train/lesion": dict(snapshot="lesion.pkl")}
    assert sorted(seen) == [("lesion", "l.zip", "2"), ("plain", "a.zip", "2")]

    alone = []
    monkeypatch.setattr(experiment, "train_variant", lambda v, *a, env=None: alone.append(env) or dict(snapshot="x"))
    lone = dataclasses.replace(TINY, variants=(Variant("plain"),))
    experiment.train_variants(Steps(tmp_path / "lone"), lone, data, lambda _text: None, parallel=2)
    assert alone == [None]  # a lone generator keeps every core (the demo's: its classifiers still train 2 at a time)
    assert experiment.training_env(1) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert experiment.training_env(2) is None  # the user's thread count is kept
    with pytest.raises(ValueError, match="parallel"):
        experiment.run_experiment(TINY, tmp_path, parallel=0)


def test_a_lone_generator_trains_on_a_core_fewer_beside_the_steps_no_generator_enters(tmp_path, monkeypatch):
    """The ahead steps (class reference, real-vs-real metrics, real arms) run in a process of their own while the lone
    generator trains on the cores left; the downstream table and the panel take their real arms from its models."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    fake, envs = fake_train_variant([]), []

    def train(*args):
        marker = tmp_path / "steps" / "real-arms.json"  # the last ahead step
        deadline = time.time() + 300
        while not marker.is_file():
            assert time.time() < deadline, "the ahead steps did not finish while the generator trained"
            time.sleep(0.1)
        envs.append(args[6])
        return fake(*args)

    monkeypatch.setattr(experiment, "train_variant", train)
    config = dataclasses.replace(
        TINY,
        variants=(Variant("spinegan", 0.1),),
        metrics=("pr63_spine", "label_fidelity8"),
        class_reference=30,
        panel=("small_cnn:dataset", "patch_cnn:blurred_image"),
    )
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert [env["OMP_NUM_THREADS"] for env in envs] == ["1"]
    assert {"data/class-reference", "metrics/real-vs-real"} <= set(out)
    kept = out["real-arms"]["models"]
    assert set(kept) == {"downstream", "patch_cnn:blurred_image"}  # small_cnn:dataset is the protocol's own
    used = {
        "downstream": tmp_path / "downstream" / "classifier-real.pkl",
        "patch_cnn:blurred_image": next((tmp_path / "panel").glob("*/classifier-real.pkl")),
    }
    for table, path in used.items():
        expected, actual = load_classifier(kept[table]).state_dict(), load_classifier(path).state_dict()
        assert all(torch.equal(actual[key], value) for key, value in expected.items()), table


def test_the_steps_beside_a_training_report_their_failure_and_stop_with_it(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    lone = dataclasses.replace(TINY, variants=(Variant("plain"),))
    missing = str(tmp_path / "missing.zip")
    data = {"abnormality": dict(train=missing, test=missing, classifier="c.pkl")}
    judges = experiment.Judges("c.pkl", missing)
    monkeypatch.setattr(experiment, "train_variant", lambda *args: dict(snapshot="x.pkl"))
    with pytest.raises(RuntimeError, match="steps beside the training failed") as failed:
        experiment.train_beside_ahead_steps(Steps(tmp_path / "a"), lone, data, judges, lambda _text: None, 2)
    assert str(tmp_path / "a" / "ahead-steps.log") in str(failed.value)
    assert "missing.zip" in str(failed.value).split("Last lines:")[1]  # the log's tail names what failed

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "train_variant", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiment.train_beside_ahead_steps(Steps(tmp_path / "b"), lone, data, judges, lambda _text: None, 2)
    assert multiprocessing.active_children() == []  # the ahead steps' process stopped with the training


def fake_train_any_labels(calls):
    """Like fake_train_variant, with the conditioning size of the variant's own dataset (2 or 8 classes)."""

    def train(variant, train_zip, classifier, config, workdir, log, env=None, start=None, public_reals=None):
        calls.append((variant.name, train_zip))
        run_dir = workdir / "00000-fake"
        run_dir.mkdir()
        torch.manual_seed(len(calls))
        c_dim = len(experiment._dataset_classes(train_zip)[0])
        G = Generator(
            z_dim=8,
            c_dim=c_dim,
            w_dim=8,
            img_resolution=config.resolution,
            img_channels=1,
            mapping_kwargs=dict(num_layers=1),
            synthesis_kwargs=dict(channel_base=64, channel_max=8),
        )
        snapshot = run_dir / "network-snapshot-000001.pkl"
        save_network_snapshot(snapshot, G=G, D=None, G_ema=G, metadata=dict(cur_nimg=1000))
        cmd = experiment.train_command(variant, train_zip, classifier, config, workdir)
        return dict(run_dirs=[str(run_dir)], snapshot=str(snapshot), command=cmd[1:])

    return train


def test_benchmark_shape_lesion_model_seed_replicates_and_privacy_audit(tmp_path, monkeypatch):
    """The benchmark's structure at tiny scale: a replicate differing only in its training seed, a lesion-type
    model with its own data, classifier and macro-AUC downstream table, and a privacy audit per generator."""
    calls = []
    monkeypatch.setattr(experiment, "train_variant", fake_train_any_labels(calls))
    config = dataclasses.replace(
        TINY,
        phantom_train=160,
        phantom_test=80,
        independent_judge=False,
        report=False,
        privacy_audit=True,
        privacy_inversion=2,
        privacy_inversion_steps=2,
        variants=(Variant("plain"), Variant("plain-seed1", seed=1), Variant("lesion", labels="lesion")),
        pools=(Pool("plain-pooled", ("plain", "plain-seed1")),),
    )
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert [name for name, _ in calls] == ["plain", "plain-seed1", "lesion"]
    assert calls[2][1].endswith("data/train-lesion/train16.zip") and calls[0][1].endswith("data/train/train16.zip")
    assert "--seed=0" in out["train/plain"]["command"] and "--seed=1" in out["train/plain-seed1"]["command"]
    assert set(out["downstream"]["aucs"]) == {
        "real",
        "synthetic-plain",
        "real+synthetic-plain",
        "synthetic-plain-seed1",
        "real+synthetic-plain-seed1",
        "synthetic-plain-pooled",
        "synthetic-plain-pooled-matched",
    }  # a pool trains no real + synthetic model, nor does its matched arm
    assert out["pool/plain-pooled"]["num_images"] == 2 * 2 * config.synth_per_class  # 2 members x 2 classes
    pooled = json.loads(open(out["downstream"]["json"]).read())["models"]["synthetic-plain-pooled"]
    assert pooled["num_train"] + pooled["num_val"] == 2 * 2 * config.synth_per_class
    assert set(out["downstream-lesion"]["aucs"]) == {"real", "synthetic-lesion", "real+synthetic-lesion"}
    lesion = json.loads(open(out["downstream-lesion"]["json"]).read())
    assert lesion["models"]["synthetic-lesion"]["test_report"]["task"] == "multiclass"
    assert len(lesion["test"]["class_names"]) == 8
    assert torch.load(out["classifier-lesion"]["classifier"], weights_only=True)["label_mode"] == "lesion"
    for name in ("plain", "plain-seed1", "lesion"):
        pixel = out[f"privacy/{name}"]["spaces"]["pixel"]
        assert 0 <= pixel["mia_auc"] <= 1 and 0 <= pixel["mia_tpr_at_1pct_fpr"] <= 1
        assert {"pixel", "classifier"} == set(out[f"privacy/{name}"]["spaces"])
        assert out[f"privacy/{name}"]["inversion"]["num_per_set"] == 2


def test_variant_labels_and_seed_are_checked_by_name():
    with pytest.raises(ValueError, match=r"variants\[0\]\.labels"):
        ExperimentConfig.from_dict(dict(variants=[dict(name="a", labels="multilabel")]))
    with pytest.raises(ValueError, match=r"variants\[0\]\.seed"):
        ExperimentConfig.from_dict(dict(variants=[dict(name="a", seed="one")]))
    config = ExperimentConfig.from_dict(dict(variants=[dict(name="a", labels="lesion", seed=2)]))
    assert config.variants[0] == Variant("a", labels="lesion", seed=2)


def test_the_real_vs_real_baseline_of_one_set_against_itself_is_perfect_in_every_space(tmp_path):
    import bad_inputs

    from spine.pipeline.experiment import Judges, baseline_metric_names, baseline_metrics

    config = ExperimentConfig(metrics=("fid8_spine", "pr83_spine", "class_diff8", "label_fidelity8"), seed=0)
    assert baseline_metric_names(config) == ["fid8_spine", "pr83_spine", "class_diff8"]
    train = bad_inputs.write_images(tmp_path / "train", [16] * 8, [0, 1] * 4)
    classifier = bad_inputs.classifier_file(tmp_path / "c.pkl", resolution=16)
    judge = bad_inputs.classifier_file(tmp_path / "j.pkl", resolution=16, seed=1)
    workdir = tmp_path / "metrics" / "real-vs-real"
    workdir.mkdir(parents=True)
    same = baseline_metrics(
        Judges(str(classifier), str(train), str(judge), str(train)), str(train), config, workdir, print
    )
    results = same["results"]
    # A set against itself: FID 0, up to the float64 square root of a product of 4-dimensional covariances; every
    # point lies in its own k-NN ball (precision and recall exactly 1); the class difference is the same image.
    assert same["errors"] == {}
    for prefix in ("", "independent_"):  # the clinical judge's features, then the independent judge's
        assert abs(results[prefix + "fid8_spine"]) < 1e-6
        assert results[prefix + "pr83_spine_precision"] == results[prefix + "pr83_spine_recall"] == 1.0
    assert results["class_diff8_r"] == pytest.approx(1.0, abs=1e-12)
    assert results["class_diff8_rms_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert "independent_class_diff8_r" not in results  # grey levels: no judge, one figure
    assert (workdir / "metric-fid8_spine.jsonl").is_file() and (
        workdir / "metric-independent_pr83_spine.jsonl"
    ).is_file()


def test_fidelity_metrics_and_a_half_trained_judge_end_to_end(tmp_path, monkeypatch):
    """The demo's fidelity at tiny scale: the judge of another architecture trains on half A of the training
    studies; its precision/recall compare with half B; every figure has its real-vs-real baseline in the report."""
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant([]))
    config = dataclasses.replace(
        TINY,
        variants=(Variant("spinegan", 0.1),),
        metrics=("pr63_spine", "class_diff6", "label_fidelity8"),
        judge="patch_cnn:blurred_image",
        judge_half=True,
        class_reference=30,
        synth_noise_mode="random",
        synth_twins=True,
    )
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    synthetic = ImageFolderDataset(str(tmp_path / "synthesize" / "spinegan" / "synthetic.zip")).metadata
    assert synthetic["source"]["noise_mode"] == "random" and synthetic["generator"]["noise_mode"] == "random"
    assert synthetic["source"]["twins"] and [e["seed"] for e in synthetic["images"]] == list(range(config.seed, 6)) * 2
    halves = out["data/judge-halves"]
    assert halves["sizes"]["a"] + halves["sizes"]["b"] == config.phantom_train
    judge = torch.load(out["judge"]["classifier"], weights_only=True)
    assert (judge["arch"], judge["input_norm"]) == ("patch_cnn", "blurred_image")
    assert judge["provenance"]["options"]["seed"] == config.seed + 1
    provenance = judge["provenance"]
    assert (
        provenance["dataset"] == halves["a"] and provenance["num_train"] + provenance["num_val"] == halves["sizes"]["a"]
    )
    results, baseline = out["metrics/spinegan"]["results"], out["metrics/real-vs-real"]["results"]
    keys = {"pr63_spine_precision", "pr63_spine_recall", "independent_pr63_spine_precision"}
    keys |= {"independent_pr63_spine_recall", "class_diff6_r", "class_diff6_rms_ratio"}
    assert keys <= set(results) and keys == set(baseline)
    assert all(0 <= results[k] <= 1 for k in keys if "pr63" in k)
    lines = json.loads((tmp_path / "metrics" / "real-vs-real" / "metric-independent_pr63_spine.jsonl").read_text())
    assert lines["data"].endswith("judge-reference.zip")  # half B, which the judge never saw
    page = (tmp_path / "report" / "index.html").read_text()
    assert "6 generated vs 6 half-B training images, the independent judge&#x27;s features" in page
    assert "trained on half A of the training studies" in page
    reference = out["data/class-reference"]
    assert reference["seed"] == config.seed + 2**23 and len(ImageFolderDataset(reference["dataset"])) == 30
    figures = out["class-means"]["figures"]
    halves = figures.pop(REFERENCE_HALVES)
    counts = {name: row["images"] for name, row in figures.items()}
    assert counts == {"real training images": 40, "real test images": 24, "spinegan": 12}
    assert halves["images"] in (15, 16) and -1 <= halves["r"] <= 1  # 15 a half, one more per class of odd count
    assert "Per-class mean images of 30 fresh phantom images of this kind (draw 8388608" in page
    assert f"two halves of the population's images against each other: {halves['r']:.2f}, so a generator" in page
    assert set(load_means(out["class-means"]["means"])) == {REFERENCE, *counts}
    # The report draws the means the step saved: it rebuilds without reading a dataset's class means again.
    monkeypatch.setattr(report, "class_means", lambda *_args: pytest.fail("class means recomputed"))
    rebuilt = report.write_experiment_report(tmp_path, tmp_path / "report2").read_text()
    assert "Per-class mean images of 30 fresh phantom images of this kind" in rebuilt


def test_the_panel_step_scores_every_arm_and_reuses_the_protocols_own_models(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant(calls))
    config = dataclasses.replace(TINY, panel=("small_cnn:dataset", "patch_cnn:blurred_image"))
    trained = []
    from spine.evaluation import panel as panel_mod

    real_train_panel = panel_mod.train_panel
    monkeypatch.setattr(
        panel_mod, "train_panel", lambda *a, **k: trained.append([m.name for m in a[4]]) or real_train_panel(*a, **k)
    )
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert trained == [["patch_cnn:blurred_image"]]  # small_cnn:dataset is the downstream protocol's own
    panel = json.loads((tmp_path / "panel" / "panel.json").read_text())
    assert panel["members"] == ["small_cnn:dataset", "patch_cnn:blurred_image"]
    assert set(panel["variants"]) == {"plain", "spinegan"} == set(out["panel"]["variants"])
    own = panel["variants"]["plain"]["members"]["small_cnn:dataset"]
    down = out["downstream"]
    assert own["skill"] == pytest.approx(down["skills"]["synthetic-plain"], abs=1e-12)  # the very same models
    assert own["real_auc"] == pytest.approx(down["aucs"]["real"], abs=1e-12)
    assert out["provenance"]["config_sha256"] and out["provenance"]["phantom_seed"] == config.seed
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Evaluator panel" in page and "lowest skill ratio (95% CI)" in page
    assert "<p class='headline'>Evaluator panel (2 classifiers), plain: lowest skill ratio" in page
    assert out["provenance"]["config_sha256"] in page


def test_an_interrupted_panel_step_resumes_at_its_first_unfinished_member(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant([]))
    config = dataclasses.replace(
        TINY, panel=("small_cnn:dataset", "patch_cnn:blurred_image", "small_cnn:blurred_image")
    )
    from spine.evaluation import panel as panel_mod

    real_run_downstream, trained = panel_mod.run_downstream, []

    def interrupted(*args, **kwargs):
        options = args[4]
        if (options.arch, options.input_norm) == ("small_cnn", "blurred_image"):
            raise KeyboardInterrupt  # the user stops the run in the panel's second member
        trained.append(options.arch)
        return real_run_downstream(*args, **kwargs)

    monkeypatch.setattr(panel_mod, "run_downstream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert trained == ["patch_cnn"]

    def recording(*args, **kwargs):
        trained.append(args[4].arch)
        return real_run_downstream(*args, **kwargs)

    monkeypatch.setattr(panel_mod, "run_downstream", recording)
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert trained == ["patch_cnn", "small_cnn"]  # the finished patch_cnn member was kept, not trained again
    assert set(out["panel"]["members"]) == set(config.panel)


def test_a_panel_member_that_does_not_exist_is_refused_by_name():
    with pytest.raises(ValueError, match=r"config.panel: .*'vgg'"):
        ExperimentConfig.from_dict(dict(panel=["vgg"]))
    with pytest.raises(ValueError, match="listed twice"):
        ExperimentConfig.from_dict(dict(panel=["resnet18", "resnet18:dataset"]))
    assert ExperimentConfig.from_dict(dict(panel=["resnet18"], phantom_seed=7)).draw_seed == 7


def fake_train_with_snapshots(calls):
    """Like fake_train_variant, with a snapshot at every kimg up to the variant's own training length."""

    def train(variant, train_zip, classifier, config, workdir, log, env=None, start=None, public_reals=None):
        calls.append(variant.name)
        run_dir = workdir / "00000-fake"
        run_dir.mkdir()
        for kimg in range(1, config.kimg_of(variant) + 1):
            torch.manual_seed(100 * len(calls) + kimg)
            G = tiny_generator(config.resolution)
            snapshot = run_dir / f"network-snapshot-{kimg:06d}.pkl"
            save_network_snapshot(snapshot, G=G, D=None, G_ema=G, metadata=dict(cur_nimg=1000 * kimg))
        cmd = experiment.train_command(variant, train_zip, classifier, config, workdir)
        return dict(run_dirs=[str(run_dir)], snapshot=str(snapshot), command=cmd[1:])

    return train


def test_a_private_generator_is_scheduled_by_its_cost_not_its_kimg():
    config = dataclasses.replace(TINY, kimg=30)
    plain, long = Variant("stylegan2-ada"), Variant("spinegan-90kimg", 0.1, kimg=90)
    assert experiment.training_cost(plain, config) == 30 and experiment.training_cost(long, config) == 90
    assert experiment.training_cost(DP_VARIANT, config) == pytest.approx(30 * experiment.DP_COST_PER_KIMG)
    order = sorted((plain, DP_VARIANT, long), key=lambda v: -experiment.training_cost(v, config))
    assert [v.name for v in order] == ["spinegan-90kimg", "spinegan-dp", "stylegan2-ada"]


def test_matched_pools_long_generator_and_the_training_curve(tmp_path, monkeypatch):
    """Goal 4 and 5 at tiny scale: a pool at one member's image count and against one generator of the members'
    combined kimg; every seed of the clinical-loss pair scored at each curve kimg, paired by seed."""
    calls = []
    monkeypatch.setattr(experiment, "train_variant", fake_train_with_snapshots(calls))
    pair = (Variant("stylegan2-ada"), Variant("spinegan", 0.1))
    config = dataclasses.replace(
        TINY,
        kimg=2,
        variants=pair
        + tuple(dataclasses.replace(v, name=f"{v.name}-seed1", seed=1) for v in pair)
        + (Variant("spinegan-4kimg", 0.1, kimg=4),),
        pools=(Pool("spinegan-pooled", ("spinegan", "spinegan-seed1"), long_generator="spinegan-4kimg"),),
        curve_kimg=(1, 2),
        curve_metrics=("label_fidelity8",),
        curve_panel=("small_cnn:dataset",),
        curve_thresholds={"independent_label_fidelity8_auc": 0.0},
    )
    out = experiment.run_experiment(config, tmp_path, log=lambda _text: None)
    assert calls[0] == "spinegan-4kimg"  # the longest training starts first
    assert "--kimg=4" in out["train/spinegan-4kimg"]["command"] and "--kimg=2" in out["train/spinegan"]["command"]

    per_class = config.synth_per_class
    assert out["pool/spinegan-pooled-matched"]["num_images"] == 2 * per_class  # one member's: 2 classes
    arms = set(out["downstream"]["aucs"])
    assert "synthetic-spinegan-pooled-matched" in arms and "real+synthetic-spinegan-pooled-matched" not in arms
    pairs = [(row["left"], row["right"]) for row in out["matched"]["rows"]]
    members = ["spinegan", "spinegan-seed1"]
    assert pairs == [
        ("spinegan-pooled", members),
        ("spinegan-pooled", ["spinegan-pooled-matched"]),
        ("spinegan-pooled-matched", members),
        ("spinegan-pooled", ["spinegan-4kimg"]),
        ("spinegan-4kimg", members),
        ("spinegan-pooled-matched", ["spinegan-4kimg"]),
    ]
    aucs = out["downstream"]["aucs"]
    first = out["matched"]["rows"][1]  # the same models as the downstream table's, so the same AUCs
    expected = aucs["synthetic-spinegan-pooled"] - aucs["synthetic-spinegan-pooled-matched"]
    assert first["auc_difference"] == pytest.approx(expected, abs=1e-12)
    assert "subsampled to one generator's" in (tmp_path / "matched" / "matched.md").read_text()

    curved = sorted(key for key in out if key.startswith("curve/"))
    assert curved == [
        f"curve/{name}" for name in sorted(["spinegan", "spinegan-seed1", "stylegan2-ada", "stylegan2-ada-seed1"])
    ]
    points = out["curve/spinegan"]["points"]
    assert [(p["kimg"], p["snapshot_kimg"]) for p in points] == [(1, 1.0), (2, 2.0)]
    assert {"skill/small_cnn:dataset", "label_fidelity8_auc", "independent_label_fidelity8_auc"} <= set(
        points[0]["figures"]
    )
    # the last curve point is the final snapshot, synthesised and classified as the downstream table's arm
    assert points[-1]["figures"]["skill/small_cnn:dataset"] == pytest.approx(
        out["downstream"]["skills"]["synthetic-spinegan"], abs=1e-12
    )
    summary = out["curve"]["summary"]
    assert summary["pair"]["seeds"] == [0, 1]
    reached = summary["to_threshold"]["independent_label_fidelity8_auc"]
    assert reached["per_seed"] == {s: dict(treated=1, control=1) for s in ("0", "1")}
    assert reached["difference"]["mean"] == 0.0 and reached["difference"]["num_pairs"] == 2
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Matched comparisons" in page and "Clinical loss and training speed" in page
    assert (tmp_path / "report" / "curve.png").is_file() and "compare them with the single-generator rows" in page
    assert "2 kimg per GAN (spinegan-4kimg: its own kimg, in the model card)" in page
    assert "<td>spinegan-4kimg</td><td>demo</td><td>4</td>" in page


def test_dp_variants_get_the_dp_judge_of_their_epsilon_and_others_the_classifier(tmp_path, monkeypatch):
    """dp_judge_epsilon (the experiment's, or a variant's own): a judge trained with DP-SGD per distinct epsilon, the
    experiment's under 'dp_judge'; only --dp=1 variants' clinical loss uses one."""
    calls = []
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant(calls))
    config = dataclasses.replace(
        TINY,
        independent_judge=False,
        dp_judge_epsilon=5.0,
        variants=(
            Variant("spinegan", 0.1),
            Variant("dp-5", 0.1, ("--dp=1",)),
            Variant("dp-2", 0.1, ("--dp=1",), dp_judge_epsilon=2.0),
            Variant("dp-2b", 0.1, ("--dp=1",), seed=3, dp_judge_epsilon=2.0),
        ),
    )
    assert config.dp_judge_epsilons() == [2.0, 5.0]
    steps, out, data, _ = experiment.prepare_data(config, tmp_path, log=lambda _text: None)
    trained = experiment.train_variants(steps, config, data, lambda _text: None, parallel=1)
    assert 1.99 <= out["dp_judge-eps2"]["epsilon"] <= 2.0 and 4.99 <= out["dp_judge"]["epsilon"] <= 5.0
    judges = {
        name: next(a for a in trained[f"train/{name}"]["command"] if a.startswith("--clinical-loss="))
        for name in ("spinegan", "dp-5", "dp-2", "dp-2b")
    }
    assert judges == {
        "spinegan": f"--clinical-loss={data['abnormality']['classifier']}",
        "dp-5": f"--clinical-loss={out['dp_judge']['classifier']}",
        "dp-2": f"--clinical-loss={out['dp_judge-eps2']['classifier']}",
        "dp-2b": f"--clinical-loss={out['dp_judge-eps2']['classifier']}",
    }
    loaded = ExperimentConfig.from_dict(config.to_dict())
    assert loaded.variants[2].dp_judge_epsilon == 2.0 and loaded == config
    bad = dict(name="x", train_args=[], dp_judge_epsilon=2)
    with pytest.raises(ValueError, match=r"variants\[0\].dp_judge_epsilon: only a --dp=1 variant has a DP judge"):
        ExperimentConfig.from_dict(dict(variants=[bad]))
    with pytest.raises(ValueError, match=r"variants\[0\].dp_judge_epsilon: expected a positive epsilon"):
        ExperimentConfig.from_dict(dict(variants=[dict(bad, train_args=["--dp=1"], dp_judge_epsilon=-1)]))
    with pytest.raises(ValueError, match="dp_judge_epsilon: expected a positive epsilon"):
        ExperimentConfig.from_dict(dict(dp_judge_epsilon=0))


def test_the_dp_judge_model_sets_the_judges_network_and_normalisation(tmp_path):
    """dp_judge_model 'ARCH:NORM' picks the DP judge's network and input normalisation; None keeps the experiment's
    classifier architecture (small_cnn where it has no GroupNorm variant) on per-image normalisation."""
    private = (Variant("dp", 0.1, ("--dp=1",)),)
    config = dataclasses.replace(
        TINY, independent_judge=False, dp_judge_epsilon=5.0, dp_judge_model="small_cnn:dataset", variants=private
    )
    _, out, _, _ = experiment.prepare_data(config, tmp_path, log=lambda _text: None)
    spec = load_classifier(out["dp_judge"]["classifier"]).spec
    assert (spec.arch, spec.input_norm) == ("small_cnn", "dataset")
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    defaults = {
        arch: dataclasses.replace(config, classifier_arch=arch, dp_judge_model=None)
        for arch in ("patch_cnn", "resnet18")
    }
    assert defaults["patch_cnn"].dp_judge_options() == dict(arch="patch_cnn", input_norm="image")
    assert defaults["resnet18"].dp_judge_options() == dict(arch="small_cnn", input_norm="image")
    for bad in ("resnet18:dataset", "small_cnn:blurred_image", "small_cnn"):
        with pytest.raises(ValueError, match=f"config.dp_judge_model: expected 'ARCH:NORM'.*got '{bad}'"):
            ExperimentConfig.from_dict(dict(dp_judge_model=bad))


def test_public_images_start_the_dp_variants_or_train_the_public_data_ones(tmp_path, monkeypatch):
    """dp_public_pretrain_kimg: the public draw's normal training images (no study of the private draw), a generator
    trained on them with DP's networks and no privacy, and only the DP-SGD variants start from it, declared public;
    a --dp-data-public=1 variant trains on the public images themselves, judged by the DP judge."""
    from training.dataset import ImageFolderDataset

    calls = []
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant(calls))
    config = dataclasses.replace(
        TINY,
        independent_judge=False,
        dp_public_pretrain_kimg=2,
        dp_judge_epsilon=5.0,
        variants=(
            Variant("spinegan", 0.1),
            Variant("spinegan-dp", 0.1, ("--dp=1",)),
            Variant("guided", 0.1, ("--dp=1", "--dp-data-public=1", "--d-cond=0")),
        ),
    )
    steps, out, data, _ = experiment.prepare_data(config, tmp_path, log=lambda _text: None)
    data["abnormality"]["public"] = experiment.public_dataset(steps, config)
    start = experiment.public_start(steps, config, lambda _text: None)
    trained = experiment.train_variants(steps, config, data, lambda _text: None, parallel=1, public=start)

    def studies_and_classes(path):
        dataset = ImageFolderDataset(path, use_labels=True)
        infos = [dataset.image_info(i)["study_id"] for i in range(len(dataset))]
        return set(infos), [int(dataset.get_label(i).argmax()) for i in range(len(dataset))]

    every = steps.run("public/data-all", None)
    public = steps.run("public/data", None)
    public_studies, public_classes = studies_and_classes(public["dataset"])
    private_studies, _ = studies_and_classes(data["abnormality"]["train"])
    _, every_classes = studies_and_classes(every["dataset"])
    assert public_classes == [0] * every_classes.count(0) == [0] * public["images"] and public["images"] > 0
    assert not public_studies & private_studies
    assert json.loads((tmp_path / "public" / "phantom" / "vindr" / "phantom_identities.json").read_text())

    pretrain = steps.run("public/pretrain", None)["command"]
    assert pretrain[-5:] == ["--aug=noaug", "--dp=1", "--dp-clip=0", "--dp-noise=0", "--dp-label-prior=1,0"]
    assert "--kimg=2" in pretrain and not any(a.startswith("--resume") or "clinical" in a for a in pretrain)
    assert start == steps.run("public/pretrain", None)["snapshot"]
    private, plain = trained["train/spinegan-dp"]["command"], trained["train/spinegan"]["command"]
    assert private[-2:] == [f"--resume={start}", "--dp-pretrain-public=1"]
    assert not any("resume" in a or "pretrain" in a for a in plain)
    guided = trained["train/guided"]["command"]
    assert f"--data={public['dataset']}" in guided and f"--clinical-loss={out['dp_judge']['classifier']}" in guided
    assert not any("resume" in a for a in guided)
    assert calls == ["public-pretrain", "spinegan-dp", "spinegan", "guided"]
    assert experiment.public_start(steps, config, lambda _text: None) == start and len(calls) == 4  # not again
    for bad in (dict(dp_public_pretrain_kimg=0), dict(dp_public_pretrain_kimg=5, source="vindr")):
        with pytest.raises(ValueError, match="dp_public_pretrain_kimg: expected a positive kimg or null"):
            ExperimentConfig.from_dict(bad)
    public_data = dict(name="guided", train_args=["--dp=1", "--dp-data-public=1"])
    with pytest.raises(ValueError, match="--dp-data-public=1 trains on another phantom draw's images"):
        ExperimentConfig.from_dict(dict(source="vindr", variants=[public_data]))


def test_a_private_critic_variant_reads_the_public_draw_beside_its_private_images(tmp_path, monkeypatch):
    """--dp-private-critic: D learns from the public images and the fakes, so the experiment names its public draw
    (--dp-public-reals) unless the variant names its own; the private images stay the variant's --data."""
    calls = []
    monkeypatch.setattr(experiment, "train_variant", fake_train_variant(calls))
    critic = ("--dp=1", "--dp-private-critic=4,4", "--d-cond=0")
    config = dataclasses.replace(
        TINY,
        independent_judge=False,
        variants=(
            Variant("spinegan", 0.1),
            Variant("critic", 0.3, critic),
            Variant("own", 0.3, (*critic, "--dp-public-reals=/elsewhere.zip")),
        ),
    )
    assert [v.needs_public_reals for v in config.variants] == [False, True, False]
    steps, _out, data, _ = experiment.prepare_data(config, tmp_path, log=lambda _text: None)
    data["abnormality"]["public"] = experiment.public_dataset(steps, config)
    trained = experiment.train_variants(steps, config, data, lambda _text: None, parallel=1)
    commands = {name: trained[f"train/{name}"]["command"] for name in ("spinegan", "critic", "own")}
    public, private = data["abnormality"]["public"], data["abnormality"]["train"]
    assert f"--dp-public-reals={public}" in commands["critic"] and f"--data={private}" in commands["critic"]
    assert [a for a in commands["own"] if a.startswith("--dp-public-reals")] == ["--dp-public-reals=/elsewhere.zip"]
    assert not any("public" in a for a in commands["spinegan"])
    with pytest.raises(ValueError, match="--dp-private-critic without --dp-public-reals=<images> reads another"):
        ExperimentConfig.from_dict(dict(source="vindr", variants=[dict(name="c", train_args=list(critic))]))
