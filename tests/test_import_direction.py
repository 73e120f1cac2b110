"""Dependencies point down: the engine (dnnlib, torch_utils, training, metrics) imports nothing from spine/."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENGINE = ("dnnlib", "torch_utils", "training", "metrics")


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module named by an import statement in the file (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_engine_file_imports_spine():
    offenders = [f"{path.relative_to(ROOT)}: {name}" for package in ENGINE for path in (ROOT / package).rglob("*.py")
                 for name in imported_modules(path) if name == "spine" or name.startswith("spine.")]
    assert offenders == []


def test_importing_the_engine_loads_no_spine_module():
    code = ("import sys, metrics.metric_main, metrics.domain, training.training_loop, training.checkpoint; "
            "print(sorted(m for m in sys.modules if m == 'spine' or m.startswith('spine.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spine_metrics_without_registration_say_what_to_import():
    code = ("from metrics.domain import classifier_provider\n"
            "try:\n    classifier_provider('fid2k_spine')\nexcept ValueError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("fid2k_spine needs the spine classifier") and \
        "import spine.evaluation.classifier_metrics" in out.stdout
    code = ("import spine.evaluation.classifier_metrics\nfrom metrics.domain import classifier_provider\n"
            "from spine.classifier.artifact import load_classifier\n"
            "print(classifier_provider('fid2k_spine').load is load_classifier)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
