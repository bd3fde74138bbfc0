"""The package's shape: imports flow one way through the layers, and the checks stay light.

Read from the source (every import statement, also those inside functions), so a new import
that climbs a layer or closes a cycle fails here, not in a reader's head.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import trainlab

PACKAGE = Path(trainlab.__file__).parent

# Lower layers never import higher ones (the same layer may import itself).
LAYERS = {
    "trainlab.errors": 0,
    "trainlab.paths": 0,
    "trainlab.logs": 0,
    "trainlab.signals": 0,
    "trainlab.collector": 0,
    "trainlab.process": 0,
    "trainlab.checkpoint_files": 0,
    "trainlab.config": 1,
    "trainlab.data": 2,
    "trainlab.models": 3,
    "trainlab.module": 3,  # where runs recorded before the layers name their model
    "trainlab.engines": 4,
    "trainlab.callbacks": 4,  # the Lightning engine's callbacks (they take its FitContext)
    "trainlab.tracking": 5,
    "trainlab.recording": 6,
    "trainlab.sweeps": 6,
    "trainlab.serve": 6,
    "trainlab.pipeline": 7,
    "trainlab.train": 8,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> int:
    matches = [prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} is in no layer of tests/test_architecture.py"
    return LAYERS[max(matches, key=len)]


def trainlab_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("trainlab")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainlab"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            # `from trainlab.engines import distributed` imports a module of that package
            found += [n if (PACKAGE.parent / (n.replace(".", "/") + ".py")).exists() else
                      node.module for n in names]  # fmt: skip
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_flow_down_the_layers(name):
    for imported in trainlab_imports(MODULES[name]):
        assert layer(imported) <= layer(name), f"{name} (layer {layer(name)}) imports {imported}"


def test_no_import_cycles():
    graph = {name: set(trainlab_imports(path)) & set(MODULES) for name, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", " -> ".join([*trail, name])
        state[name] = "open"
        for other in sorted(graph[name]):
            visit(other, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_checks_import_neither_torch_nor_mlflow():
    """What a wrong config needs to be reported: composition and every check, no heavy import
    (they take seconds; the error line must come within one)."""
    probe = (
        "import sys, trainlab.train, trainlab.sweeps.callback\n"
        "heavy = [m for m in ('torch', 'lightning', 'mlflow', 'pandas', 'sklearn') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_module_reads_in_one_sitting():
    for name, path in MODULES.items():
        assert len(path.read_text().splitlines()) <= 300, name
