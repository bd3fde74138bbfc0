"""Which sweep a command is, before anything runs: the same command is the same sweep.

The key hashes what the user asked for: the composed job config (Hydra's own node left out: its
sweep folder is a new timestamp each time), the sweep's overrides and the sweeper's settings, less
what only says how long or where to run (`n_trials`, `n_jobs`, the launcher, `sweep.resume`). The
parent run carries it (tag trainlab.sweep.key) and `<TRAINLAB_HOME>/multirun/.sweeps/<key>.yaml`
points at the sweep's folder and says how it ended, so that a command finds, without asking the
store, whether it continues a sweep that did not end (killed, interrupted) in that same folder:
its jobs then have the job keys their runs were recorded with (config/checkpoint.py), and
`resume=auto` continues them.

`sweep.replicates=N` on a grid (Hydra's basic sweeper) becomes a sweep of `seed` over N values,
the last (fastest-varying) key, so that a configuration's replicates are neighbours.

A sweep's children record no plots and no model unless the command line asks for them
(CHILD_DEFAULTS): in a sweep of short jobs the recorder spent most of its time drawing four plots
and saving a model for every child (bench row P4, docs/performance.md), while the parent's
summary draws every child's curve and final loss, and every metric of every child stays in the
store.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from trainlab.config.checks import override_key
from trainlab.errors import ConfigError
from trainlab.paths import home
from trainlab.tracking.liveness import alive_here, start_time

NOT_IN_KEY = ("n_trials", "n_jobs", "study_name", "asynchronous")  # of hydra.sweeper
RUNNING, ENDED = "running", ("FINISHED", "FAILED")
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_key(config: DictConfig) -> str:
    job = OmegaConf.to_container(
        OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]), resolve=True
    )
    job.get("sweep", {}).pop("resume", None)
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    sweeper = {k: v for k, v in sweeper.items() if k not in NOT_IN_KEY}
    overrides = [o for o in config.hydra.overrides.task if override_key(o) != "sweep.resume"]
    identity = {"job": job, "sweeper": sweeper, "overrides": overrides}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


@dataclass
class SweepRecord:
    """`<home>/multirun/.sweeps/<key>.yaml`: the sweep's folder and how it ended."""

    key: str
    sweep_dir: str
    state: str = RUNNING  # running, or its parent's end: FINISHED, FAILED, KILLED
    host: str = ""
    pid: str = ""
    pid_start: str = ""

    @staticmethod
    def file(key: str) -> Path:
        return home() / "multirun" / ".sweeps" / f"{key}.yaml"

    def save(self) -> None:
        file = self.file(self.key)
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_suffix(".partial")
        partial.write_text(yaml.safe_dump(asdict(self), sort_keys=False))
        os.replace(partial, file)

    @classmethod
    def load(cls, key: str) -> SweepRecord | None:
        file = cls.file(key)
        return cls(**yaml.safe_load(file.read_text())) if file.is_file() else None

    def ended(self, state: str) -> None:
        self.state = state
        self.save()


def started(key: str, sweep_dir: str) -> SweepRecord:
    pid = os.getpid()
    record = SweepRecord(
        key=key,
        sweep_dir=sweep_dir,
        host=socket.gethostname(),
        pid=str(pid),
        pid_start=start_time(pid) or "",
    )
    record.save()
    return record


def claim(key: str) -> int:
    """Hold `<home>/multirun/.sweeps/<key>.lock` while this sweep runs (its file descriptor;
    the lock goes with this process, however it ends, and is not inherited by its forks); a
    second command of the same sweep is refused while the first runs, rather than train every
    job a second time beside it."""
    file = SweepRecord.file(key).with_suffix(".lock")
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        record = SweepRecord.load(key)
        where = f", folder {record.sweep_dir}" if record is not None else ""
        raise ConfigError(
            f"the same sweep runs already (process {holder}{where}); expected one command per "
            "sweep: wait for it to end, or stop it and run this command again to continue it"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def unfinished_sweep(key: str) -> SweepRecord | None:
    """The sweep this command continues: the last one with its key, unless it ended for good
    (FINISHED, FAILED), still runs, or its folder is gone."""
    record = SweepRecord.load(key)
    if record is None or record.state in ENDED or not Path(record.sweep_dir).is_dir():
        return None
    if record.host == socket.gethostname() and alive_here(record.pid, record.pid_start):
        return None  # the same sweep, running in another terminal: this one starts anew
    return record


def use_sweep_dir(config: DictConfig, sweep_dir: str) -> None:
    """Run this multirun in `sweep_dir` (a continued sweep's folder) instead of a new one: in
    the config the launcher reads, and as one of Hydra's own overrides, from which every job's
    config is composed again."""
    quoted = "'" + sweep_dir.replace("\\", "\\\\").replace("'", "\\'") + "'"
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = sweep_dir
        config.hydra.overrides.hydra.append(f"hydra.sweep.dir={quoted}")


CHILD_DEFAULTS = ("tracking.plots=false", "tracking.log_model=false")


def child_defaults(config: DictConfig) -> None:
    """The sweep children's own defaults, unless the command line sets those keys."""
    given = {override_key(o) for o in config.hydra.overrides.task}
    extra = [o for o in CHILD_DEFAULTS if override_key(o) not in given]
    if extra:
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.overrides.task = [*config.hydra.overrides.task, *extra]


def replicates_of(config: DictConfig) -> int:
    return int(OmegaConf.select(config, "sweep.replicates", default=1) or 1)


def expand_replicates(config: DictConfig) -> None:
    """A grid's `sweep.replicates=N`: `seed=s,s+1,...` appended to the sweep's overrides, where s
    is the seed given (or the config's)."""
    count = replicates_of(config)
    if count <= 1 or str(config.hydra.sweeper.get("_target_")) != BASIC_SWEEPER:
        return
    if "seed" in (OmegaConf.select(config, "hydra.sweeper.params") or {}):
        raise ConfigError(
            f"sweep.replicates={count} gives every configuration its seeds; expected seed not in "
            "hydra.sweeper.params"
        )
    overrides: list[str] = []
    base = int(config.seed)
    for text in config.hydra.overrides.task:
        if override_key(text) != "seed":
            overrides.append(text)
            continue
        parsed: Any = OverridesParser.create().parse_override(text)
        if parsed.is_sweep_override():
            raise ConfigError(
                f"sweep.replicates={count} with {text}: the replicates are the seeds; expected "
                "one seed (the first replicate's) or none"
            )
        base = int(parsed.value())
    overrides.append("seed=" + ",".join(str(base + i) for i in range(count)))
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.overrides.task = overrides
