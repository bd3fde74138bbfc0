"""How trainlab's commands end: once everything they owe is written, at once.

Python's own exit unloads every module and runs every finalizer; with torch, Lightning, MLflow and
SQLAlchemy loaded that is time nobody waits for (docs/performance.md, "Start and exit"). A
command that has flushed its output and closed its files loses nothing by skipping it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn


def exit_now(status: int) -> NoReturn:
    """Flush what is printed, close log files, and end the process with `status`."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


def console_script(main: Callable[[], object]) -> NoReturn:
    """A command's `main()`, then exit_now with its status: SystemExit's, 0 when it returned.
    An exception that is not SystemExit (a bug) goes up with its traceback, the usual way."""
    try:
        main()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            exit_now(done.code or 0)
        print(done.code, file=sys.stderr)  # sys.exit("message"), as Python would print it
        exit_now(1)
    exit_now(0)
