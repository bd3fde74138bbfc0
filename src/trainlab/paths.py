"""Where trainlab finds its configs and keeps its records; every path is absolute.

The configs ship inside the package (`trainlab/conf`, a link to the repository's `conf/` in a
source checkout, a real folder in a wheel). Records live under `home()`:

- `TRAINLAB_HOME` when set (tests point it at a temporary folder);
- else the source checkout the package runs from (`pip install -e .`, `make install`);
- else `$XDG_DATA_HOME/trainlab` (`~/.local/share/trainlab`) for an installed wheel.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "conf"
EXPERIMENTS_DIR = CONFIG_DIR / "experiment"


def checkout_root() -> Path | None:
    """The source checkout this package is imported from (an editable install), else None."""
    root = PACKAGE_DIR.parents[1]
    if (root / "pyproject.toml").is_file() and (root / "conf").is_dir():
        return root
    return None


def home() -> Path:
    """The folder that holds mlflow.db, mlartifacts/, outputs/ and multirun/."""
    chosen = os.environ.get("TRAINLAB_HOME")
    if chosen:
        return Path(chosen).expanduser().resolve()
    root = checkout_root()
    if root is not None:
        return root
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home).expanduser().resolve() / "trainlab"


def output_dir() -> Path:
    """Hydra's output folder for this job (absolute), or one under home() without Hydra's CLI."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    folder = home() / "outputs" / "compose"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def in_multirun() -> bool:
    """True inside one job of a Hydra multirun (`-m`)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def task_overrides() -> list[str]:
    """The overrides this job was given on the command line (or by its sweep)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store under home(); absolute."""
    return absolute_sqlite_uri(
        os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"
    )


def absolute_sqlite_uri(uri: str) -> str:
    """`sqlite:///rel/x.db` (relative to the current folder) as `sqlite:////abs/rel/x.db`: a
    store written relative to wherever a command ran is one `make ui` never finds."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and ":memory:" not in uri:
        path = uri[len(prefix) :]
        if path and not path.startswith("/"):
            return f"{prefix}{resolve_user_path(path)}"
    return uri


def default_artifact_root() -> Path:
    return home() / "mlartifacts"


def resolve_user_path(path: str) -> Path:
    """A path given on the command line: relative to where the user ran the command."""
    return Path(path).expanduser().resolve()


def unwritable_reason(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (made if missing), or None when they can.

    A real write probe, not os.access: root passes access checks on read-only file systems."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


# `${trainlab_home:}` in the YAML files (Hydra output dirs) resolves to home().
if not OmegaConf.has_resolver("trainlab_home"):
    OmegaConf.register_new_resolver("trainlab_home", lambda: str(home()))
