"""Who is recording a run, and whether they are still alive: the tags that make a run whose
processes died without a word recognisable as stale (no MLflow here; the trainer and the recorder
both use it).

A RUNNING run carries the host and the process ids (with their start times, so that a reused
pid is not taken for the old process) of its trainer and its recorder, and a heartbeat the
recorder rewrites every `HEARTBEAT_SECONDS` while it holds the run open. The recorder already
ends a run KILLED when its trainer disconnects; a run is stale when both are gone (SIGKILL of
both, a node that failed, a laptop that slept): on this host, when neither process exists; on
another host, when its heartbeat is older than `STALE_AFTER_BEATS` beats plus a grace period.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

HOST_TAG = "trainlab.host"
PID_TAG = "trainlab.pid"
PID_START_TAG = "trainlab.pid_start"
RECORDER_PID_TAG = "trainlab.recorder_pid"
RECORDER_START_TAG = "trainlab.recorder_pid_start"
HEARTBEAT_TAG = "trainlab.heartbeat"  # unix seconds of the recorder's last beat
HEARTBEAT_EVERY_TAG = "trainlab.heartbeat_every"
FAILURE_TAG = "trainlab.failure"
STALE = "stale"  # the trainlab.failure of a run marked stale

# The tags that say who records a run; a resumed run gets its new processes' values.
LIVENESS_TAGS = (HOST_TAG, PID_TAG, PID_START_TAG)

HEARTBEAT_SECONDS = 30.0  # tracking.heartbeat_seconds' default
STALE_AFTER_BEATS = 4
GRACE_SECONDS = 60.0  # clocks of two hosts, a store busy for a while


def start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc): with the pid, what tells
    a live process from a new one that got the same pid. None where /proc does not tell, and
    for a process that has exited but was not reaped yet (a zombie: its parent died too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]  # state; field 22, the start time


def process_tags(pid_tag: str = PID_TAG, start_tag: str = PID_START_TAG) -> dict[str, str]:
    """This process as the one recording a run (the trainer's by default)."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), pid_tag: str(pid), start_tag: start_time(pid) or ""}


def recorder_tags(now: float, every: float = HEARTBEAT_SECONDS) -> dict[str, str]:
    """What the recorder adds when it opens a run: itself and the first heartbeat."""
    pid = os.getpid()
    return {
        RECORDER_PID_TAG: str(pid),
        RECORDER_START_TAG: start_time(pid) or "",
        HEARTBEAT_TAG: f"{now:.0f}",
        HEARTBEAT_EVERY_TAG: f"{every:g}",
    }


def alive_here(pid: str | None, started: str | None) -> bool:
    """Whether process `pid` of this host is still the one that started at `started`."""
    if not pid or not pid.isdigit():
        return False
    if Path("/proc/self/stat").is_file():
        now_started = start_time(int(pid))
        return now_started is not None and (not started or now_started == started)
    try:  # no /proc: the pid alone
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_here(tags: dict[str, str]) -> str | None:
    """The live process (trainer or recorder) on this host that holds the run, if any."""
    if tags.get(HOST_TAG) != socket.gethostname():
        return None
    if alive_here(tags.get(PID_TAG), tags.get(PID_START_TAG)):
        return f"trainer pid {tags[PID_TAG]}"
    if alive_here(tags.get(RECORDER_PID_TAG), tags.get(RECORDER_START_TAG)):
        return f"recorder pid {tags[RECORDER_PID_TAG]}"
    return None


def staleness(tags: dict[str, str], now: float | None = None) -> str | None:
    """Why a RUNNING run with these tags is stale; None when it may be alive, or when nothing
    tells (a run recorded without heartbeat, by another tool or an older trainlab)."""
    now = time.time() if now is None else now
    try:
        beat = float(tags[HEARTBEAT_TAG])
        every = float(tags.get(HEARTBEAT_EVERY_TAG) or HEARTBEAT_SECONDS)
    except (KeyError, ValueError):
        return None
    host = tags.get(HOST_TAG, "")
    age = now - beat
    if host == socket.gethostname():
        if running_here(tags) is not None:
            return None
        return (
            f"its trainer (pid {tags.get(PID_TAG, '?')}) and recorder "
            f"(pid {tags.get(RECORDER_PID_TAG, '?')}) on {host} are gone; last heartbeat "
            f"{age:.0f} s ago"
        )
    if age > STALE_AFTER_BEATS * every + GRACE_SECONDS:
        return f"no heartbeat for {age:.0f} s from {host or 'its host'} (one every {every:g} s)"
    return None


def last_seen_ms(tags: dict[str, str], default_ms: int) -> int:
    """The run's last sign of life, as its end time when it is marked stale."""
    try:
        return int(float(tags[HEARTBEAT_TAG]) * 1000)
    except (KeyError, ValueError):
        return default_ms
