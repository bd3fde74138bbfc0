"""Where runs recorded before the trial callback moved to the callbacks name it: their
config/resolved.yaml says `callbacks.trial._target_:
trainlab.sweeps.trial_reports.TrialReports.for_run` (the oldest form of that entry). Kept so
that they still resume, rerun and fork; new configs name `trainlab.callbacks.TrialReports`."""

from trainlab.callbacks.study_reports import TrialReports

__all__ = ["TrialReports"]
