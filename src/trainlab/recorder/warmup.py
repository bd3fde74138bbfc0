"""What finishing a run needs, made ready in the recorder while the trainer still works.

Two phases, in a thread of their own so that messages are handled meanwhile:

1. Imports, while the trainer still imports torch: a run's end then waits on drawing and
   writing, not on importing (matplotlib, torch, torch's dynamo for the model's export:
   recorder/model.py's `prepare_export`). Then the garbage collector, held
   since the recorder started, resumes with what was imported frozen (trainlab/collector.py).
2. A rehearsal, once the first run is open (not before: a trainer waiting for its run to exist
   would wait for it): one small figure drawn, and one tiny model saved with MLflow into a
   temporary folder. The first model MLflow saves in a process scans every installed package's
   metadata to check the model's requirements (most of a second, cached for the process after
   that; MLflow has no public switch for it), and the first figure loads fonts and caches
   glyphs. Once rehearsed, logging the model at a run's end costs a small fraction of that.

Finishing a run waits for the rehearsal (`ready`): matplotlib and MLflow's model saving are not
made to run in two threads at once, and what is left of the rehearsal is what the real thing
would have cost.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable

from trainlab import collector
from trainlab.recorder.model import prepare_export, rehearse_model_logging
from trainlab.recorder.plots import rehearse_drawing

# What finishing needs beyond what recorder.plots and recorder.model import at their top: the
# Agg canvas (imported at the first savefig) and mlflow.pytorch with torch and torch.export's
# machinery (at the first model).
IMPORTS: dict[str, Callable[[], object]] = {
    "plots": lambda: importlib.import_module("matplotlib.backends.backend_agg"),
    "model": prepare_export,
}
REHEARSALS = {"plots": rehearse_drawing, "model": rehearse_model_logging}


class WarmUp:
    """Prepares the end of runs with these settings ("plots", "model")."""

    def __init__(self, wanted: tuple[str, ...]) -> None:
        self.wanted = wanted
        self.first_run = threading.Event()
        self.closing = False
        self.thread = threading.Thread(target=self.prepare, name="trainlab-warm-up", daemon=True)
        self.thread.start()

    def prepare(self) -> None:
        for name in self.wanted:
            with contextlib.suppress(Exception):  # what fails here fails again, reported, when used
                IMPORTS[name]()
        # The recorder paused the collector for its imports (trainlab/collector.py): they are in.
        collector.resume()
        self.first_run.wait()
        for name in self.wanted:
            if self.closing:
                return
            with contextlib.suppress(Exception):  # a rehearsal only saves time
                REHEARSALS[name]()

    def run_opened(self) -> None:
        self.first_run.set()

    def ready(self) -> None:
        """Everything prepared (started now if no run had opened yet)."""
        self.first_run.set()
        self.thread.join()

    def settled(self) -> None:
        """No rehearsal in progress (none is started): before drawing a sweep's summary plot."""
        if self.first_run.is_set():
            self.thread.join()

    def close(self) -> None:
        """Before the process exits: a rehearsal in progress ends and removes its folder."""
        self.closing = True
        self.settled()
