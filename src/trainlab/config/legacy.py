"""What runs recorded by older versions name that this version names otherwise: a `_target_` of
their config/resolved.yaml, read as today's when a recorded config is read again (resume, rerun,
fork). A job's key (config/schema.py's `job_identity`) leaves out the callbacks entries that
hold their default, so a default that was renamed must read as today's default: the resumed run
keeps the key it was recorded with, and `resume=auto` still finds it.

Only renamed defaults belong here. A string a run chose (a model's `_target_`) is part of its
job key as recorded, and keeps resolving through a module kept for it (trainlab/module.py).
"""

from __future__ import annotations

from typing import Any

RENAMED_DEFAULTS = {
    # `callbacks.trial` before the trial callback moved down to callbacks/ (the oldest form;
    # sweeps/trial_reports.py still resolves it).
    "trainlab.sweeps.trial_reports.TrialReports.for_run": "trainlab.callbacks.TrialReports.for_run",
}


def as_named_today(node: Any) -> Any:
    """A recorded config (plain data) with every renamed default `_target_` as named today."""
    if isinstance(node, dict):
        return {
            key: today(value) if key == "_target_" else as_named_today(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [as_named_today(value) for value in node]
    return node


def today(target: Any) -> Any:
    return RENAMED_DEFAULTS.get(target, target) if isinstance(target, str) else target
