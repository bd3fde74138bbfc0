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
    "trainlab.user_classes": 0,  # a class of the user's by its dotted path, and its errors
    "trainlab.paths": 0,
    "trainlab.logs": 0,
    "trainlab.signals": 0,
    "trainlab.collector": 0,
    "trainlab.process": 0,
    "trainlab.console": 0,  # what a run prints: the seed's lines, predictions, the progress bar
    "trainlab.checkpoints": 0,  # checkpoint files on disk, and a checkpoint loaded as data
    "trainlab.config": 1,
    "trainlab.data": 2,
    "trainlab.models": 3,
    "trainlab.measures": 3,  # what a step's row holds, and the references it is measured against
    "trainlab.module": 3,  # where runs recorded before the layers name their model
    "trainlab.engines": 4,
    "trainlab.callbacks": 4,  # the Lightning engine's callbacks (they take its FitContext)
    "trainlab.tracking": 5,  # the trainer's side of tracking, and the messages
    "trainlab.resume": 5,  # resume, rerun and fork planned (the trainer's side)
    "trainlab.recorder": 6,  # the recorder process's side: MLflow
    "trainlab.run_life": 7,  # a run opened, finished and always ended
    "trainlab.run_handover": 7,  # what a finished run hands its recorder
    "trainlab.outcome": 7,  # what a run predicts and prints around its fit
    "trainlab.sweeps": 7,
    "trainlab.commands": 7,  # the user commands: predict, evaluate, compare, store, dashboard
    "trainlab.team": 7,  # the team service: tracking server, logins, users, object store
    "trainlab.pipeline": 8,
    "trainlab.job_result": 7,  # what a job comes to
    "trainlab.job": 9,
    "trainlab.cli": 10,
    "trainlab.api": 10,  # trainlab.train(...): the same job from Python
    "trainlab": 11,  # the package's front door: the API, imported on first use
}
# The recorder runs in a process of its own and is the only package that imports MLflow on the
# training path; the user commands (commands/) and the team service (team/) open stores of their own.
RECORDER = "trainlab.recorder"
RECORDER_SIDE = (RECORDER, "trainlab.commands", "trainlab.team")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer(name: str) -> int:
    matches = [prefix for prefix in LAYERS if within(name, prefix)]
    assert matches, f"{name} is in no layer of tests/test_architecture.py"
    return LAYERS[max(matches, key=len)]


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def trainlab_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("trainlab")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trainlab"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            # `from trainlab.engines import distributed` imports a module (or package) of it
            found += [n if is_module(n) else node.module for n in names]
    return found


def imported_modules(path: Path) -> list[str]:
    """Every module an import statement of the file names (`from a import b`: a)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TRAINER_SIDE = sorted(n for n in MODULES if not any(within(n, p) for p in RECORDER_SIDE))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_flow_down_the_layers(name):
    for imported in trainlab_imports(MODULES[name]):
        assert layer(imported) <= layer(name), f"{name} (layer {layer(name)}) imports {imported}"


@pytest.mark.parametrize("name", TRAINER_SIDE)
def test_the_trainer_side_never_imports_the_recorder_side(name):
    """tracking/ and everything else of the training path talk to the recorder only through
    tracking/messages.py; they import neither trainlab.recorder nor MLflow."""
    climbing = [i for i in trainlab_imports(MODULES[name]) if within(i, RECORDER)]
    assert not climbing, f"{name} imports {climbing}: only recorder/, commands/ and team/ may"
    mlflow = [i for i in imported_modules(MODULES[name]) if within(i, "mlflow")]
    assert not mlflow, f"{name} imports {mlflow}: only recorder/, commands/ and team/ may"


def test_the_boundary_is_known():
    """The trainer's side of tracking is checked, and the recorder is a package of its own."""
    assert "trainlab.tracking.messages" in TRAINER_SIDE
    assert "trainlab.tracking.connection" in TRAINER_SIDE
    assert "trainlab.recorder.server" in MODULES and "trainlab.recorder.server" not in TRAINER_SIDE


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
        "import sys, trainlab.cli, trainlab.sweeps.callback\n"
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
