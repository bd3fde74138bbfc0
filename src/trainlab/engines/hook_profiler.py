"""`NoProfiling`: the Trainer's profiler when nobody profiles, without a context built per hook.

Lightning wraps every hook it calls (each callback's hooks, the module's, the strategy's: about
70 a training step) in `trainer.profiler.profile(name)`. Its default, `PassThroughProfiler`,
inherits `Profiler.profile`, a `contextlib.contextmanager` generator: a generator object and its
context manager are made, entered and closed per hook only to call two methods that do nothing.
A custom profiler is Lightning's documented extension point (`Trainer(profiler=...)`); this one
hands back one shared no-op context instead, which is most of what the callback form costs a
step beyond the work the callbacks do (docs/performance.md, P2 and P3).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from lightning.pytorch.profilers import Profiler

_NOTHING: AbstractContextManager[None] = nullcontext()  # reentrant: it holds no state


class NoProfiling(Profiler):
    """Lightning's PassThroughProfiler, one shared no-op context for every profiled action."""

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass

    def profile(self, action_name: str) -> AbstractContextManager[None]:  # type: ignore[override]
        return _NOTHING
