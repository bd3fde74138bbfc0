"""How many of trainlab's modules one training run goes through, from the command line to the
recorder's last write: the modules a newcomer reads to follow it (issue 28, item 6).

`python -m benchmarks.run_path` runs `trainlab-train` on the seed (tracked, in a temporary
TRAINLAB_HOME) with a profile hook in both processes, the trainer and its recorder, that notes
each trainlab module in which a function is called (importing a module for one of its names does
not count: a reader follows calls). It prints the modules per process, their number together,
and the package's size: lines of source and the largest package's share.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import trainlab

PACKAGE = Path(trainlab.__file__).parent
BIN = Path(sys.executable).parent

# Installed in both processes through PYTHONPATH: each module is written the first time one of
# its functions is called, because trainlab's commands leave with os._exit (no atexit runs).
HOOK = """
import os, sys, threading
_seen = set()
_out = open(os.path.join(os.environ["TRAINLAB_RUN_PATH"], f"{os.getpid()}.txt"), "a")
def _note(frame, event, arg):
    if event != "call":
        return
    name = frame.f_globals.get("__name__", "")
    # Code a file of trainlab's holds: dataclasses' generated methods (file "<string>") and a
    # module's own top level are not something a reader follows.
    code = frame.f_code
    if (name.startswith("trainlab") and name not in _seen and code.co_name != "<module>"
            and code.co_filename.endswith(".py")):
        _seen.add(name)
        _out.write(f"{sys.argv[0]} {name}\\n")
        _out.flush()
sys.setprofile(_note)
threading.setprofile(_note)
"""


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sizes() -> tuple[int, Counter[str]]:
    """Lines of source in all, and per top-level package (a top-level module is its own)."""
    per_package: Counter[str] = Counter()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        per_package[parts[0].removesuffix(".py")] += len(path.read_text().splitlines())
    return sum(per_package.values()), per_package


def traced_run(overrides: list[str]) -> dict[str, set[str]]:
    """The trainlab modules whose functions ran, per process (trainer, recorder)."""
    with tempfile.TemporaryDirectory() as folder:
        home, notes, hook = Path(folder) / "home", Path(folder) / "notes", Path(folder) / "hook"
        for made in (home, notes, hook):
            made.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK)
        path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "TRAINLAB_HOME": str(home), "TRAINLAB_RUN_PATH": str(notes),
               "PYTHONPATH": path}  # fmt: skip
        done = subprocess.run([str(BIN / "trainlab-train"), *overrides], env=env, cwd=folder,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"the traced run failed:\n{done.stderr[-2000:]}")
        processes: dict[str, set[str]] = {}
        for note in notes.glob("*.txt"):
            for line in note.read_text().splitlines():
                program, name = line.split(" ", 1)
                role = "recorder" if "recorder" in program or program == "-m" else "trainer"
                processes.setdefault(f"{role} ({note.stem})", set()).add(name)
        return processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", default=["max_epochs=20"])
    args = parser.parse_args()
    processes = traced_run(args.overrides)
    together: set[str] = set().union(*processes.values())
    for role, names in sorted(processes.items()):
        print(f"{role}: {len(names)} modules")
        for name in sorted(names):
            print(f"  {name}")
    total, per_package = package_sizes()
    largest, lines = per_package.most_common(1)[0]
    modules = sum(1 for _ in PACKAGE.rglob("*.py"))
    print(f"one run's path: {len(together)} modules of {modules}")
    print(f"source: {total} lines; largest package {largest}/ {lines} lines "
          f"({lines / total:.0%})")  # fmt: skip


if __name__ == "__main__":
    main()
