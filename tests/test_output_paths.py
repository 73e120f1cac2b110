"""Every command-line tool checks where it writes before any work (issue 32): one `Error:` line, exit 1, nothing
left behind, the tool's other inputs not even looked at (they are dummies here).

The output is a path under a regular file: unwritable for every user, root included (tests run as root here,
which ignores permission bits). Which folder the check probes, and the read-only and sysfs cases, are tested in
tests/dnnlib/test_output_path.py; here each tool shows that it checks every output it has.
"""

import importlib
import importlib.util
import json
import shutil
from pathlib import Path

import bad_inputs
import pytest
from click.testing import CliRunner

import dnnlib
from dnnlib import output_path

REPO = Path(__file__).resolve().parents[1]


def script_main(name: str):
    """The click command of a root script or tools/ script (legacy.py's is convert_network_pickle, as NVIDIA's), or
    of a package module."""
    if name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(name).stem, REPO / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, "main", None) or module.convert_network_pickle
    return importlib.import_module(name).main


# (tool, arguments with OUT for the output checked, the other required ones as dummies)
TOOLS = [
    ("train.py", ["--outdir", "OUT", "--data", "x.zip"]),
    ("generate.py", ["--outdir", "OUT", "--network", "x.pkl", "--seeds", "0"]),
    ("spine.data.dataset_tool", ["--dest", "OUT", "--source", "x"]),
    ("spine.data.dataset_tool", ["--preview", "OUT", "--dest", "d.zip", "--source", "x"]),
    ("spine.data.preview", ["--out", "OUT", "x.zip"]),
    ("spine.phantom.tree", ["--outdir", "OUT"]),
    ("spine.evaluation.synthesize", ["--dest", "OUT", "--network", "x.pkl"]),
    ("spine.evaluation.synthesize", ["--dicom", "OUT", "--dest", "d.zip", "--network", "x.pkl"]),
    ("spine.evaluation.pooling", ["--dest", "OUT", "--member", "a=x.zip"]),
    ("spine.evaluation.downstream", ["--out", "OUT", "--real-train", "x.zip", "--test", "x.zip"]),
    ("spine.evaluation.comparison", ["--out", "OUT", "--downstream", "x", "--test", "x.zip", "--compare", "a", "b"]),
    ("spine.evaluation.diagnosis", ["--out", "OUT", "--experiment", "x"]),
    ("spine.evaluation.privacy_audit", ["--outdir", "OUT", "--network", "x.pkl", "--train", "x", "--heldout", "y"]),
    ("spine.pipeline.report", ["--out", "OUT", "--experiment", "x"]),
    ("spine.pipeline.demo", ["--outdir", "OUT"]),
    ("spine.pipeline.experiment", ["--outdir", "OUT"]),
    ("tools/screenshot_report.py", ["--out", "OUT", "x.html"]),
    ("tools/snapshot_skill.py", ["--out", "OUT", "--real", "x.zip"]),
    ("legacy.py", ["--dest", "OUT", "--source", "x.pkl"]),
]


@pytest.mark.parametrize("tool, args", TOOLS, ids=[f"{t}:{a[0]}" for t, a in TOOLS])
def test_every_output_is_checked_before_any_work(tmp_path, tool, args):
    out = str(bad_inputs.unwritable_path(tmp_path))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(script_main(tool), [out if arg == "OUT" else arg for arg in args])
    bad_inputs.assert_refused(result, f"{args[0]}={out}: ", root=tmp_path, before=before)
    assert "is a file, not a folder" in result.output


@pytest.mark.parametrize("command, flag", [("train", "--out"), ("evaluate", "--out"), ("evaluate", "--roc")])
def test_classifier_outputs_are_checked_before_any_work(tmp_path, command, flag):
    from spine.classifier.cli import cli

    out = str(bad_inputs.unwritable_path(tmp_path, "x"))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(
        cli,
        [command, flag, out, "--data", "x.zip", "--classifier", "c.pkl", "--out", "o"]
        if flag == "--roc"
        else [command, flag, out, "--data", "x.zip"],
    )
    bad_inputs.assert_refused(result, f"{flag}={out}: ", root=tmp_path, before=before)


def test_calc_metrics_checks_the_run_folder_before_computing(tmp_path, monkeypatch):
    """Results go beside the snapshot; a run folder it cannot write is refused before any metric runs."""
    from test_generate import snapshot

    import calc_metrics

    run = tmp_path / "run"
    run.mkdir()
    snapshot(str(run / "network-snapshot-000000.pkl"), c_dim=0)
    (run / "training_options.json").write_text(json.dumps({}))
    bad_inputs.write_images(tmp_path / "data", [8] * 4)
    real_mkstemp = output_path.tempfile.mkstemp

    def refuse_in_run(**kwargs):
        if Path(kwargs["dir"]) == run:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(**kwargs)

    monkeypatch.setattr(output_path.tempfile, "mkstemp", refuse_in_run)
    monkeypatch.setattr(calc_metrics, "run_metrics", lambda *a: pytest.fail("computed before the check"))
    before = bad_inputs.tree(tmp_path)
    result = CliRunner().invoke(
        calc_metrics.main,
        ["--network", str(run / "network-snapshot-000000.pkl"), "--metrics", "fid64", "--data", str(tmp_path / "data")],
    )
    bad_inputs.assert_refused(result, f"cannot write in {run} (Permission denied)", root=tmp_path, before=before)


def test_generate_checks_free_space_for_its_images(tmp_path, monkeypatch):
    from test_generate import snapshot

    import generate

    snapshot(str(tmp_path / "net.pkl"), c_dim=0)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(output_path.shutil, "disk_usage", lambda path: usage._replace(free=100 * 64 - 1))
    before = bad_inputs.tree(tmp_path)
    args = [
        "--network",
        str(tmp_path / "net.pkl"),
        "--seeds",
        "0-99",
        "--outdir",
        str(tmp_path / "o"),
        "--device",
        "cpu",
    ]
    bad_inputs.assert_refused(
        CliRunner().invoke(generate.main, args), "6.2 KiB needed", root=tmp_path, before=before
    )  # 100 images of 8x8x1 bytes
    monkeypatch.setattr(output_path.shutil, "disk_usage", lambda path: usage._replace(free=100 * 64))
    assert CliRunner().invoke(generate.main, args).exit_code == 0
    assert dnnlib  # the shared helper every tool calls
