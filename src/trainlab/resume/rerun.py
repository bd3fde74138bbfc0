"""`trainlab-train rerun=<run id>`: a new run of exactly the config a past run recorded.

The run's `config/resolved.yaml` (downloaded by the recorder process: the trainer never imports
MLflow) is made typed again with the schemas it was built from, whatever the option files and
presets say today. The command line's overrides go on top, as Hydra composed them: a group choice
(`optimizer=adam`) replaces the recorded group with today's option, a key (`optimizer.lr=0.1`,
`seed=3`, `+tags.x=y`) replaces that value. The new run is tagged `trainlab.rerun_of`; a run
from a sweep re-runs as a single run (its config is the job's, the sweep is not).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from trainlab.config.checks import RECORDED_GROUPS, config_from_record, override_key
from trainlab.errors import ConfigError
from trainlab.tracking.connection import RecorderConnection, RecorderError
from trainlab.tracking.messages import FetchRequest, Reply
from trainlab.tracking.store_checks import sqlite_path

CONFIG_ARTIFACT = "config/resolved.yaml"


def plan_rerun(
    cfg: DictConfig, uri: str, overrides: list[str], recorder: RecorderConnection, folder: Path
) -> DictConfig:
    """The recorded config of run `cfg.rerun.run` with the command line's overrides on top."""
    run_id = str(cfg.rerun.run)
    keys = overridden_keys(overrides, f"rerun={run_id}", "rerun")
    merged = with_overrides(
        fetch_config(recorder, uri, run_id, folder, f"rerun={run_id}"), cfg, keys
    )
    with open_dict(merged):
        merged.rerun = cfg.rerun
    return merged


def overridden_keys(overrides: list[str], what: str, kind: str) -> list[str]:
    """The keys this command changes in a recorded config (`kind`'s own key left out); one line
    for an override that would not keep it (a preset, a key removed)."""
    overrides = [o for o in overrides if not override_key(o).startswith((kind, "hydra."))]
    keys = [override_key(o) for o in overrides]
    for override, key in zip(overrides, keys, strict=True):
        if override.startswith("~") or key == "experiment":
            raise ConfigError(
                f"{what}: {override!r} cannot be combined with a {kind} (it keeps the recorded "
                "config); expected overrides like optimizer.lr=0.1 or optimizer=adam"
            )
    return keys


def with_overrides(recorded: dict, cfg: DictConfig, keys: list[str]) -> DictConfig:
    """A run's recorded config with this command's values of `keys` on top: a rerun's config,
    and a fork's (resume/fork.py)."""
    merged = config_from_record(recorded)
    with open_dict(merged):
        merged.resume = None  # the original may have been resumed; the new run starts afresh
        for key in keys:
            if key in RECORDED_GROUPS:
                merged[key] = cfg[key]  # today's option of that group, with its overrides
                if key == "data" and "x_test" not in keys:
                    merged.x_test = OmegaConf.select(cfg, "x_test")  # it follows the data
            else:
                OmegaConf.update(merged, key, OmegaConf.select(cfg, key), merge=False)
        # Where the run was read from decides where the new one goes, not where the original went.
        merged.tracking.uri = OmegaConf.select(cfg, "tracking.uri")
    return merged


def fetch_config(
    recorder: RecorderConnection, uri: str, run_id: str, folder: Path, what: str
) -> dict:
    """The run's recorded config, downloaded by the recorder process."""
    database = sqlite_path(uri)
    missing = database is not None and not database.exists()  # no new empty store for this
    try:
        if missing:
            raise RecorderError(f"no store at {uri}")
        request = FetchRequest(
            uri=uri, run_id=run_id, artifacts=(CONFIG_ARTIFACT,), folder=str(folder / "rerun")
        )
        files = recorder.send(request, reply=Reply.HANDLED)
    except RecorderError as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err) or "not found" in str(err).lower() or missing:
            raise ConfigError(
                f"{what}: no run {run_id!r} in the store {uri}; expected a run id "
                "printed by trainlab-train (or tracking.uri= pointing at its store)"
            ) from None
        raise ConfigError(
            f"{what}: run {run_id} has no artifact {CONFIG_ARTIFACT}; only runs that "
            f"trainlab-train recorded can be re-run or forked ({err})"
        ) from None
    return yaml.safe_load(Path(files[CONFIG_ARTIFACT]).read_text())
