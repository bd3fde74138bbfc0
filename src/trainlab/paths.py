"""Where trainlab finds its configs and keeps its records.

Every path is absolute: the project root comes from this file's location (the package is
installed editable from ``src/``), and ``TRAINLAB_HOME`` moves the store, artifacts and Hydra
output folders elsewhere (tests point it at a temporary folder).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "conf"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"


def home() -> Path:
    """The folder that holds mlflow.db, mlartifacts/, outputs/ and multirun/."""
    return Path(os.environ.get("TRAINLAB_HOME", PROJECT_ROOT)).expanduser().resolve()


def output_dir() -> Path:
    """Hydra's output folder for this job (absolute), or one under home() without Hydra's CLI."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    folder = home() / "outputs" / "compose"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store under home()."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


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


# `${trainlab_home:}` in the YAML files (Hydra output dirs, store URIs) resolves to home().
if not OmegaConf.has_resolver("trainlab_home"):
    OmegaConf.register_new_resolver("trainlab_home", lambda: str(home()))
