"""training.resume_options: a continued run's options = the run's own, plus the changeable ones given now."""

import pytest

from training import resume_options as ro

PATHS = ("data",)
RECORDED = dict(cfg="demo", kimg=2.0, metrics=None, gamma=None, snap=50, workers=None, data="/data/x.zip", cond=True)


def test_nothing_given_continues_with_the_runs_options():
    merged, notes = ro.merge_options(
        dict(RECORDED, cfg="auto", kimg=None, cond=False, data=None, resume="c.pt"),
        explicit={"resume"},
        recorded=RECORDED,
        path="c.pt",
        path_options=PATHS,
    )
    assert merged == dict(RECORDED, resume="c.pt")
    assert notes == ["Continuing c.pt with the run's own options; none changed"]


def test_changeable_options_override_and_are_listed():
    given = dict(RECORDED, kimg=4.0, metrics="fid2k", workers=1)
    merged, notes = ro.merge_options(
        given, explicit={"kimg", "metrics", "workers", "cfg"}, recorded=RECORDED, path="c.pt", path_options=PATHS
    )
    assert (merged["kimg"], merged["metrics"], merged["workers"], merged["cfg"]) == (4.0, "fid2k", 1, "demo")
    assert notes == [
        "Continuing c.pt with the run's own options, changed:",
        "  --kimg: the run has 2.0, now 4.0",
        "  --metrics: the run has None, now 'fid2k'",
        "  --workers: the run has None, now 1",
    ]


def test_other_changes_are_refused_one_line_per_option():
    given = dict(RECORDED, cfg="spine", gamma=3.0, kimg=4.0)
    with pytest.raises(ro.ResumeMismatch) as info:
        ro.merge_options(given, explicit={"cfg", "gamma", "kimg"}, recorded=RECORDED, path="c.pt", path_options=PATHS)
    lines = str(info.value).splitlines()
    assert lines[1:3] == ["  --cfg: the run has 'demo', now 'spine'", "  --gamma: the run has None, now 3.0"]
    assert len(lines) == 4  # the header, one line per refused option, the advice; --kimg may change


def test_paths_compare_as_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recorded = ro.recorded_options(dict(RECORDED, data="x.zip", resume="c.pt"), PATHS)
    assert recorded["data"] == str(tmp_path / "x.zip") and "resume" not in recorded
    merged, _ = ro.merge_options(
        dict(recorded, data="x.zip"), explicit={"data"}, recorded=recorded, path="c.pt", path_options=PATHS
    )
    assert merged["data"] == "x.zip"  # the same file, given relatively: accepted


def test_settings_that_make_another_run_are_listed_and_changeable_ones_are_not():
    saved = dict(total_kimg=2, metrics=["fid2k"], network_snapshot_ticks=5, ema_kimg=1, run_dir="runs/00000-x")
    args = dict(total_kimg=25000, metrics=["fid50k_full"], network_snapshot_ticks=50, ema_kimg=1, run_dir=None)
    assert ro.setting_differences(saved, args) == []
    assert ro.setting_differences(saved, dict(args, ema_kimg=5)) == ["  ema_kimg: the run has 1, now 5"]


def test_settings_with_a_relative_dataset_path_compare_equal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = dict(training_set_kwargs=dict(path="data/x.zip", resolution=32), clinical=dict(weight=0.1), kimg=5)
    absolute = dict(relative, training_set_kwargs=dict(path=str(tmp_path / "data" / "x.zip"), resolution=32))
    assert ro.comparable(relative) == ro.comparable(absolute)
    assert relative["training_set_kwargs"]["path"] == "data/x.zip"  # not mutated
    assert ro.comparable(relative) != ro.comparable(dict(absolute, clinical=dict(weight=0.1, augment=True)))
