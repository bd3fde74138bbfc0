"""ARCHITECTURE.md cannot drift: every module is named once with its purpose, every name is real.

The "Every module" section holds one table row per module of src/trainlab (`__init__.py` files
excluded: a package is named, with its purpose, in the layer table), and any `*.py` the document
mentions anywhere must exist, so a module added, moved or removed fails here until the document
says so.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.test_architecture import LAYERS, PACKAGE

REPO = Path(__file__).parent.parent
DOC = REPO / "ARCHITECTURE.md"
SECTION = "## Every module"
ROW = re.compile(r"^\|\s*`([\w/]+\.py)`\s*\|(.*)\|\s*$")
PY_NAME = re.compile(r"(?<![\w./-])([\w/]+\.py)\b")

MODULE_FILES = sorted(
    p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"
)
PACKAGES = sorted(
    p.parent.relative_to(PACKAGE).as_posix()
    for p in PACKAGE.rglob("__init__.py")
    if p.parent != PACKAGE
)


def section(text: str) -> list[str]:
    lines = text.splitlines()
    assert SECTION in lines, f"ARCHITECTURE.md has no {SECTION!r} section"
    start = lines.index(SECTION) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def named_modules() -> list[tuple[str, str]]:
    """(path under src/trainlab, purpose) for every row of the module tables."""
    return [
        (found[1], found[2].strip())
        for line in section(DOC.read_text())
        if (found := ROW.match(line))
    ]


def test_every_module_is_named_once_with_its_purpose():
    named = [path for path, _ in named_modules()]
    missing = [m for m in MODULE_FILES if m not in named]
    assert not missing, (
        f"ARCHITECTURE.md names no purpose for {', '.join(f'src/trainlab/{m}' for m in missing)}: "
        f"expected a row | `<path>` | <one-line purpose> | under {SECTION!r}"
    )
    twice = sorted({m for m in named if named.count(m) > 1})
    assert not twice, f"ARCHITECTURE.md names {twice} more than once under {SECTION!r}"
    empty = [path for path, purpose in named_modules() if len(purpose) < 10]
    assert not empty, f"ARCHITECTURE.md gives {empty} no purpose"


def test_every_module_named_exists():
    gone = [path for path, _ in named_modules() if path not in MODULE_FILES]
    assert not gone, f"ARCHITECTURE.md names {gone} under {SECTION!r}: no such module"


def test_every_file_the_document_mentions_exists():
    """A `*.py` anywhere in the text: a path under src/trainlab, src/ or the repository."""
    roots = (PACKAGE, PACKAGE.parent, REPO)
    names = set(PY_NAME.findall(DOC.read_text()))
    gone = sorted(n for n in names if not any((root / n).is_file() for root in roots))
    assert not gone, f"ARCHITECTURE.md mentions {gone}: no such file (a path under src/trainlab)"


def test_every_package_is_in_the_layer_table():
    rows = [line for line in DOC.read_text().splitlines() if re.match(r"^\| \d+ \|", line)]
    missing = [p for p in PACKAGES if not any(f"`{p}/`" in row for row in rows)]
    assert not missing, f"the layer table of ARCHITECTURE.md does not place {missing}"


def test_the_layer_table_agrees_with_the_import_test():
    """Each module or package the table places is in that layer of tests/test_architecture.py."""
    for line in DOC.read_text().splitlines():
        if found := re.match(r"^\| (\d+) \| ([^|]+) \|", line):
            for name in re.findall(r"`([\w/.]+)`", found[2]):
                dotted = "trainlab." + name.removesuffix("/").removesuffix(".py").replace("/", ".")
                assert LAYERS.get(dotted) == int(found[1]), (
                    f"ARCHITECTURE.md puts {name} in layer {found[1]}; "
                    f"tests/test_architecture.py says {LAYERS.get(dotted)}"
                )


def test_the_pipeline_reads_as_a_recipe():
    """`pipeline.run`, the recipe of one run, stays under 40 lines, its signature included."""
    tree = ast.parse((PACKAGE / "pipeline.py").read_text())
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    length = run.end_lineno - run.lineno + 1
    assert length < 40, f"pipeline.run is {length} lines; expected under 40"
