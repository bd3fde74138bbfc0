"""A run's artifact folder that lost files while the run was recorded (removed by hand, a cleanup
job, a disk swapped under it): MLflow writes each later file into a folder it creates again, so
the run would end FINISHED without its config and environment files (and `rerun=<id>` fails).

At the run's end the recorder looks for every file it wrote at the start and writes again those
that are gone (it still holds them); a file it cannot write again (a checkpoint whose snapshot it
handed over) ends a run that would have FINISHED as FAILED instead, said in one line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse
from urllib.request import url2pathname

from trainlab.recorder.run_files import REQUIREMENTS, log_files
from trainlab.recorder.writer import RunWriter
from trainlab.tracking.environment import installed_packages
from trainlab.tracking.liveness import FAILURE_TAG
from trainlab.tracking.messages import EndStatus, FinalReport, RunStart

ARTIFACTS_LOST = "artifacts_lost"  # the trainlab.failure of a run that lost files for good


def files_kept(
    writer: RunWriter, report: FinalReport, start: RunStart | None, handed: list[str]
) -> FinalReport:
    """A run about to FINISH has every file written so far: those its start wrote are written
    again when gone; another one gone ends it FAILED. Any other ending goes on as it is."""
    if report.status is not EndStatus.FINISHED:
        return report
    first = start_files(start, {REQUIREMENTS: ""}) if start is not None else []
    try:
        gone = missing(writer, first + handed)
    except Exception:  # a store that cannot be read is said by the writes that follow
        return report
    if not gone:
        return report
    restored = [p for p in gone if p in first]
    if start is not None and restored:
        texts = {**start.texts, REQUIREMENTS: installed_packages()}
        log_files(
            writer.client,
            writer.run_id,
            {k: v for k, v in start.files.items() if k in restored},
            {k: v for k, v in texts.items() if k in restored},
        )
    lost = [p for p in gone if p not in first]
    line = lost_line(writer.artifact_uri, restored, lost)
    writer.warnings.append(line)
    if not lost:
        return report
    tags = {**report.tags, FAILURE_TAG: ARTIFACTS_LOST}
    return dataclasses.replace(report, status=EndStatus.FAILED, error=line, tags=tags)


def start_files(start: RunStart, texts: dict[str, str]) -> list[str]:
    """The artifact paths a run's start writes (its documents and texts)."""
    return sorted({*start.files, *start.texts, *texts})


def missing(writer: RunWriter, paths: list[str]) -> list[str]:
    """Those of `paths` the run's artifacts no longer hold: looked for on disk where the
    artifact folder is on this machine, else one listing per folder through MLflow (whose
    listing of a run also searches the run's logged models, the larger part of a short run's
    end)."""
    folder = local_folder(writer.artifact_uri)
    if folder is not None:
        return [p for p in paths if not (folder / p).is_file()]
    present: set[str] = set()
    for parent in sorted({str(PurePosixPath(p).parent) for p in paths}):
        listed = writer.client.list_artifacts(writer.run_id, None if parent == "." else parent)
        present.update(entry.path for entry in listed)
    return [p for p in paths if p not in present]


def local_folder(uri: str) -> Path | None:
    """The folder a local artifact URI (a path, or file://) names; None for any other store."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return Path(uri) if parsed.scheme == "" else None


def lost_line(folder: str, restored: list[str], lost: list[str]) -> str:
    """The one line that says it."""
    said = f"the run's artifact folder {folder} lost files while the run was recorded"
    if restored:
        said += f"; written again: {', '.join(restored)}"
    if lost:
        said += f"; lost for good: {', '.join(lost)} (the run ends FAILED)"
    return said
