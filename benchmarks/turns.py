"""Results of `make bench` and how they are taken: runs that take turns.

On a busy or drifting machine one measure run after another sees a different machine (a row of
the same code moved by 30% between runs: P2 1.04, 1.24, 1.59 within 15 minutes). So the runs a
ratio compares take turns, A, B, A, B ..., each round gives one ratio (B / A of that round), and
the row reports the median of those ratios with their min and max; a row passes on its median.
Drift during a run falls on both sides of each ratio, and the spread shows how far to trust it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Result:
    name: str
    what: str
    baseline_s: float
    trainlab_s: float
    target: float  # trainlab / baseline must be <= target (or >= for speed-ups, see `higher`)
    higher: bool = False
    peer: float | None = None  # naive stack's time / trainlab's, where it was measured
    # Per round of runs that took turns: trainlab / baseline (baseline / trainlab if `higher`).
    ratios: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        if self.ratios:
            return statistics.median(self.ratios)
        if self.higher:
            return self.baseline_s / self.trainlab_s
        return self.trainlab_s / self.baseline_s

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.ratios), max(self.ratios)) if len(self.ratios) > 1 else None

    @property
    def passed(self) -> bool:
        return self.ratio >= self.target if self.higher else self.ratio <= self.target


def table(results: list[Result]) -> str:
    lines = [
        "| measure | what | baseline s | trainlab s | ratio (min-max) | target | result "
        "| naive / trainlab |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sign = ">=" if r.higher else "<="
        informative = r.target == float("inf")
        target = "-" if informative else f"{sign} {r.target:g}"
        verdict = "-" if informative else ("pass" if r.passed else "FAIL")
        peer = f"{r.peer:.1f}x" if r.peer is not None else ""
        spread = f" ({r.spread[0]:.2f}-{r.spread[1]:.2f})" if r.spread else ""
        lines.append(
            f"| {r.name} | {r.what} | {r.baseline_s:.4g} | {r.trainlab_s:.4g} | {r.ratio:.2f}"
            f"{spread} | {target} | {verdict} | {peer} |"
        )
    return "\n".join(lines)


def timed(fn: Callable[[], float | None]) -> float:
    """Seconds of `fn` (its own return value when it times itself, else wall time)."""
    start = time.perf_counter()
    own = fn()
    return own if own is not None else time.perf_counter() - start


def median_time(fn: Callable[[], float | None], repeats: int) -> float:
    """Median seconds of `fn` over `repeats` runs in a row (where nothing takes turns with it)."""
    return statistics.median(timed(fn) for _ in range(repeats))


def take_turns(runs: dict[str, Callable[[], float | None]], rounds: int) -> dict[str, list[float]]:
    """Each run once per round, in the order given, `rounds` times: {name: seconds per round}."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            samples[name].append(timed(fn))
    return samples


def compared(
    name: str,
    what: str,
    baseline: list[float],
    ours: list[float],
    target: float,
    higher: bool = False,
    peer: float | None = None,
) -> Result:
    """A row from runs that took turns: the medians, and the ratio of each round."""
    pairs = zip(baseline, ours, strict=True)
    ratios = tuple(b / o if higher else o / b for b, o in pairs)
    return Result(
        name,
        what,
        statistics.median(baseline),
        statistics.median(ours),
        target,
        higher=higher,
        peer=peer,
        ratios=ratios,
    )
