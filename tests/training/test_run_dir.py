"""training.run_dir: numbered run folders and the `latest` link to the newest."""

import os

from training.run_dir import create_run_dir, point_latest


def test_latest_follows_the_newest_run_and_never_counts_as_one(tmp_path):
    out = str(tmp_path)
    first = create_run_dir(out, "a")
    point_latest(out, first)
    second = create_run_dir(out, "b")
    assert os.path.basename(second) == "00001-b"  # 'latest' has no number
    point_latest(out, second)
    assert os.readlink(tmp_path / "latest") == "00001-b" and sorted(os.listdir(out)) == ["00000-a", "00001-b", "latest"]


def test_a_latest_that_is_not_a_link_is_left_alone(tmp_path):
    (tmp_path / "latest").mkdir()
    point_latest(str(tmp_path), create_run_dir(str(tmp_path), "a"))
    assert not os.path.islink(tmp_path / "latest") and sorted(os.listdir(tmp_path)) == ["00000-a", "latest"]


def test_the_next_steps_name_the_run_its_newest_snapshot_and_how_to_continue(tmp_path):
    from training.run_dir import next_steps

    run = create_run_dir(str(tmp_path), "a")
    for name in ("network-snapshot-000004.pkl", "network-snapshot-000010.pkl", "fakes000010.png"):
        (tmp_path / "00000-a" / name).write_text("")
    assert next_steps(str(tmp_path), run).splitlines() == [
        f"Run folder: {run} (also {tmp_path}/latest until the next run)",
        f"Newest snapshot: {run}/network-snapshot-000010.pkl",
        f"Continue with: python train.py --outdir {tmp_path} --resume={run} --kimg=<more>",
    ]
