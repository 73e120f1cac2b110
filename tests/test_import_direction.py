"""Dependencies point down. The whole layer order is written here, bottom first; a module may import modules of its
own package and of lower layers, never of a higher layer or of another package in its own layer, and no two
modules import each other, directly or through others (a cycle). The root scripts are the top: no library imports
them. Every import statement counts, including those inside functions."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dnnlib",),
    ("torch_utils",),
    ("training",),
    ("metrics",),
    ("spine.scoring",),  # AUC, ROC, bootstrap: the classifier, label fidelity and the evaluation score alike
    ("spine.data",),
    ("spine.phantom",),
    ("spine.classifier",),
    ("spine.clinical", "spine.dp", "spine.diversity", "spine.fidelity"),  # training plug-ins
    ("spine.evaluation",),
    ("spine.pipeline",),
    ("train", "generate", "calc_metrics", "legacy", "projector", "style_mixing", "dataset_tool"),  # the root scripts
)
LIBRARIES = ("dnnlib", "torch_utils", "training", "metrics", "spine")
ENGINE = ("dnnlib", "torch_utils", "training", "metrics")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, pathlib.Path]:
    files = [path for package in LIBRARIES for path in (ROOT / package).rglob("*.py")]
    files += [ROOT / f"{name}.py" for name in LAYERS[-1]]
    return {module_name(path): path for path in files}


def imported_names(path: pathlib.Path) -> set[str]:
    """Every module named by an import statement in the file (top level or inside functions), relative imports
    resolved; `from a import b` names both a and a.b (b may be a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """{module: project modules it imports} (an imported name resolved to the longest project module prefix)."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def placement(module: str) -> tuple[int, str] | None:
    """(layer index, package) of a module: the longest package prefix listed in LAYERS; None for `spine` itself."""
    best = None
    for index, packages in enumerate(LAYERS):
        for package in packages:
            inside = module == package or module.startswith(package + ".")
            if inside and (best is None or len(package) > len(best[1])):
                best = (index, package)
    return best


def test_every_module_has_a_layer():
    assert [name for name in project_modules() if name != "spine" and placement(name) is None] == []


def uphill_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b' for every import of a module in a higher layer or in another package of the same layer."""
    offenders = []
    for module, targets in sorted(graph.items()):
        here = placement(module)
        for target in sorted(targets):
            there = placement(target)
            if here is not None and there is not None and there[1] != here[1] and there[0] >= here[0]:
                offenders.append(f"{module} -> {target}")
    return offenders


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules of every cycle (Tarjan's strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_imports_point_down():
    assert uphill_imports(import_graph()) == []


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []


def test_the_checks_catch_uphill_imports_and_cycles():
    """On a made-up graph: uphill, sideways (sibling packages) and library-to-script imports are found, downhill
    and same-package ones are not; each cycle is found once."""
    graph = {
        "spine.classifier.training": {"spine.evaluation.downstream", "spine.classifier.data"},
        "spine.evaluation.downstream": {"spine.classifier.data", "training.loss"},
        "spine.classifier.data": set(),
        "training.loss": set(),
        "spine.clinical.loss": {"spine.dp.update"},
        "spine.dp.update": set(),
        "spine.data.dicom": {"train"},
        "train": {"spine.data.dicom"},
        "torch_utils.a": {"torch_utils.b"},
        "torch_utils.b": {"torch_utils.c"},
        "torch_utils.c": {"torch_utils.a"},
    }
    assert uphill_imports(graph) == [
        "spine.classifier.training -> spine.evaluation.downstream",
        "spine.clinical.loss -> spine.dp.update",
        "spine.data.dicom -> train",
    ]
    assert import_cycles(graph) == [["spine.data.dicom", "train"], ["torch_utils.a", "torch_utils.b", "torch_utils.c"]]


def test_no_engine_file_imports_spine():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in ENGINE
        for path in (ROOT / package).rglob("*.py")
        for name in imported_names(path)
        if name == "spine" or name.startswith("spine.")
    ]
    assert offenders == []


def test_importing_the_engine_loads_no_spine_module():
    code = (
        "import sys, metrics.metric_main, metrics.domain, training.training_loop, training.checkpoint; "
        "print(sorted(m for m in sys.modules if m == 'spine' or m.startswith('spine.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spine_metrics_without_registration_say_what_to_import():
    code = (
        "from metrics.domain import classifier_provider\n"
        "try:\n    classifier_provider('fid2k_spine')\nexcept ValueError as exc:\n    print(exc)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert (
        out.stdout.startswith("fid2k_spine needs the spine classifier")
        and "import spine.evaluation.classifier_metrics" in out.stdout
    )
    code = (
        "import spine.evaluation.classifier_metrics\nfrom metrics.domain import classifier_provider\n"
        "from spine.classifier.artifact import load_classifier\n"
        "print(classifier_provider('fid2k_spine').load is load_classifier)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
