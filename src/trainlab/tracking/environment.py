"""Which environment a run came from: library versions, the host, the command line, the installed
packages. No MLflow, no torch here (the trainer adds torch's CUDA build itself).

Versions come from the installed distributions' metadata (`importlib.metadata`, quick):
the same answer whether or not this process has imported the library. The full package list is
slower to read, so the recorder process reads it (once per process, while the trainer imports
torch); it runs the trainer's own interpreter, so it sees the same packages.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.metadata
import platform
import shlex
import socket
from collections.abc import Sequence

ENV_TAG = "trainlab.env."
COMMAND_TAG = "trainlab.command"
# tag suffix -> distribution name
LIBRARIES = {"torch": "torch", "lightning": "lightning", "mlflow": "mlflow", "hydra": "hydra-core"}


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def environment_tags() -> dict[str, str]:
    """trainlab.env.python, .torch, .lightning, .mlflow, .hydra, .host (cached per process)."""
    tags = {f"{ENV_TAG}python": platform.python_version(), f"{ENV_TAG}host": socket.gethostname()}
    tags.update({f"{ENV_TAG}{tag}": version(dist) for tag, dist in LIBRARIES.items()})
    return tags


# What made the runs of this call when it was not a command line (the Python API sets it).
calling: contextvars.ContextVar[str | None] = contextvars.ContextVar("calling", default=None)


def command_line(argv: Sequence[str]) -> str:
    """The command exactly as it ran, quoted for a shell. Given `sys.orig_argv`: what the user
    typed (with the interpreter running the console script), before any rewriting of sys.argv;
    inside `trainlab.train(...)`, that call."""
    return calling.get() or shlex.join(argv)


@functools.cache
def installed_packages() -> str:
    """`pip freeze`-like: one `name==version` line per installed distribution, sorted."""
    lines = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    return "".join(f"{line}\n" for line in sorted(lines, key=str.lower))
