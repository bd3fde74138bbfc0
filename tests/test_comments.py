"""Comments say why, not when: no measured figure in the package's comments and docstrings.

A comment keeps the one-sentence reason for the code's shape; the measurement behind it lives in
`benchmarks/` results and docs/performance.md ("Why the code is shaped this way"), where it can be
dated, measured again and compared. This reads every comment (tokenize) and every string statement
(ast: module, class and function docstrings, attribute docstrings) of src/trainlab/**/*.py, every
line of them, and fails naming file:line for:

- a number followed by a unit of time: "2 s", "~0.5 s", "1.5-2 s", "40 ms", "~1 us", "3 µs",
  "ns", "sec", "seconds", "min", "minutes", "h", "hours";
- a measured ratio: a number glued to "x" or to the multiplication sign ("15x slower", "1.3x of"),
  or a number of "times faster/slower/quicker/longer/shorter";
- a percentage ("~3% of a step");
- a citation of a project document that is not in the project: an upper-case `NAME.md` or a
  `docs/...md` path that exists neither at the root nor in docs/ ("FACTS.md").

Sizes are not timings and pass ("1,000,000 x 20", "50,000-step"); so do words ("a slow import",
"within a second"), which keep the reason without pretending to a measurement.

Excluded, narrowly: SETTINGS below, phrases that name a value the code or a library holds (a
default interval, MLflow's SQLite wait, the staleness rule), not a timing anyone measured. Each
entry names its file, the exact phrase and why it is a value; only the figures inside that phrase
are excused (a measured figure added on the same line still fails), and an entry whose phrase is
no longer in its file fails too, so the list cannot outlive what it excuses.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "trainlab"

NUMBER = r"(?<![\w.])~?\d+(?:[.,]\d+)*"
TIMING = re.compile(
    NUMBER + r"(?:\s?-\s?\d+(?:\.\d+)?)?\s?"
    r"(?:ms|us|µs|μs|ns|s|secs?|seconds?|mins?|minutes?|h|hrs?|hours?)\b",
    re.IGNORECASE,
)
RATIO = re.compile(
    NUMBER
    + r"(?:x|\u00d7)(?!\w)|"
    + NUMBER
    + r"\s+times\s+(?:faster|slower|quicker|longer|shorter)"
)
PERCENT = re.compile(NUMBER + r"\s?%")
DOCUMENT = re.compile(r"(?<![\w/.-])(docs/[\w./-]+\.md|[A-Z][A-Z0-9_-]*\.md)\b")

# (module under src/trainlab, exact phrase): why its figure is a value, not a measurement.
SETTINGS = {
    ("config/checkpoint.py", "Why 60 s and not the 5 minutes other tools use"): (
        "checkpoint.every_seconds's default and the common default it departs from"
    ),
    ("config/checkpoint.py", "large enough for 60 s to"): "checkpoint.every_seconds's default",
    ("config/runtime.py", "4 beats (+1 min)"): (
        "tracking/liveness.py's rule: STALE_AFTER_BEATS beats plus GRACE_SECONDS"
    ),
    ("recorder/mlflow_store.py", "wait 20 s for another writer"): (
        "MLflow's own SQLite busy_timeout, a setting of MLflow's"
    ),
    ("tracking/store_checks.py", "MLflow's own sessions wait 20 s"): (
        "MLflow's own SQLite busy_timeout, a setting of MLflow's"
    ),
}


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def comment_lines(source: str) -> list[tuple[int, str]]:
    """Each comment and each line of each string statement of a module, with its line number."""
    lines = source.splitlines()
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            rows = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            found.extend((row, lines[row - 1]) for row in rows)
    return sorted(found)


def document_exists(name: str) -> bool:
    return (ROOT / name).is_file() or (ROOT / "docs" / name).is_file()


def findings(source: str, module: str) -> list[str]:
    """`module:line: what` for each figure or missing document in the module's comments."""
    excused = [phrase for (where, phrase) in SETTINGS if where == module]
    bad = []
    for row, text in comment_lines(source):
        scanned = text
        for phrase in excused:
            scanned = scanned.replace(phrase, " ")
        figures = [m.group() for p in (TIMING, RATIO, PERCENT) for m in p.finditer(scanned)]
        if figures:
            bad.append(f"src/trainlab/{module}:{row}: {', '.join(figures)}: {text.strip()}")
        bad.extend(
            f"src/trainlab/{module}:{row}: cites {cited}, which is not in the project"
            for cited in DOCUMENT.findall(text)
            if not document_exists(cited)
        )
    return bad


def test_comments_carry_no_measured_figures() -> None:
    bad = [
        line
        for path in sources()
        for line in findings(path.read_text(encoding="utf-8"), path.relative_to(PACKAGE).as_posix())
    ]
    assert not bad, (
        f"{len(bad)} comment or docstring lines carry a measured figure or cite a document that "
        "is not in the project (keep the one-sentence reason; the figure goes to "
        "docs/performance.md, 'Why the code is shaped this way'):\n" + "\n".join(bad)
    )


def test_every_excused_setting_is_still_there() -> None:
    gone = [
        f"src/trainlab/{module}: {phrase!r}"
        for (module, phrase) in SETTINGS
        if phrase not in (PACKAGE / module).read_text(encoding="utf-8")
    ]
    assert not gone, "SETTINGS excuses phrases no longer in their modules:\n" + "\n".join(gone)


@pytest.mark.parametrize(
    "source",
    [
        "x = 1  # costs ~2 s of every start\n",
        "def f():\n    '''Imported here: MLflow (1.5-2 s).'''\n",
        "'''A module.\n\nIt collates sample by sample,\n15x slower than slicing.\n'''\n",
        "# a hook: ~1 us a step\n",
        "# ~3% of a step of the seed\n",
        "# 40 ms to import\n",
        "# 13 s for a 50,000-step run before\n",
        "LOCK = 600  # creating a store takes ~1 s\n",
        "SAMPLE = 10.0  # MLflow's default sampling interval: 10 s\n",
        "# as measured in FACTS.md\n",
        "class A:\n    x: int = 1\n    '''0.3 seconds to build.'''\n",
    ],
)
def test_the_scan_finds_a_figure(source: str) -> None:
    assert findings(source, "probe.py"), source


@pytest.mark.parametrize(
    "source",
    [
        "SAMPLE = 10.0  # MLflow's default sampling interval\n",
        "# 1,000,000 x 20 rows of 442 x 10 features, a 50,000-step run, Y = 2X\n",
        "'''See docs/performance.md, README.md and summary/replicates.md.'''\n",
        "x = f'{seconds:.1f} s'  # said in seconds\n",
    ],
)
def test_the_scan_passes_values_and_sizes(source: str) -> None:
    assert not findings(source, "probe.py"), source


def test_an_excused_phrase_excuses_only_itself() -> None:
    excused = "BUSY = 30.0  # (MLflow's own sessions wait 20 s)\n"
    assert not findings(excused, "tracking/store_checks.py")
    assert findings(excused.replace(")", "; opening one took ~1 s)"), "tracking/store_checks.py")
