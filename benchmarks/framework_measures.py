"""The framework's rows of `make bench`: what trainlab's Lightning engine, its callbacks and its
module cost a step beyond Lightning's own (P2, P3, M1), each against a barebones Trainer fitting
the same module over the same batches, and the raw loops; the runs of a row take turns."""

from __future__ import annotations

import torch

from benchmarks import baselines
from benchmarks.measures import LEAN, Trainlab
from benchmarks.turns import Result, compared, take_turns
from trainlab.engines.hook_profiler import NoProfiling


def p2_framework(lab: Trainlab, steps: int, repeats: int) -> list[Result]:
    """An untracked run against a bare module in a barebones Trainer (and the raw loop), and
    what the callback form alone costs: the floor with as many do-nothing callbacks as an
    untracked run has. The four take turns."""
    x, y = baselines.seed_tensors()
    batches = baselines.TensorBatches(x, y, None, False, 0)
    count = lab.untracked_callbacks()
    samples = take_turns(
        {
            "raw": lambda: baselines.raw_seed_loop(steps),
            "floor": lambda: baselines.lightning_floor(batches, steps, 1, 1, "cpu"),
            "idle": lambda: baselines.lightning_floor(batches, steps, 1, 1, "cpu", count),
            "lean": lambda: baselines.lightning_floor(
                batches, steps, 1, 1, "cpu", count, NoProfiling()
            ),
            "ours": lambda: lab.run(f"max_epochs={steps}", "tracking=none"),
        },
        repeats,
    )
    raw, floor, idle, lean, ours = (samples[k] for k in ("raw", "floor", "idle", "lean", "ours"))
    return [
        compared(
            "P2", f"seed run untracked vs barebones-Trainer floor, {steps} steps", floor, ours, 1.10
        ),
        compared(
            "P2-callbacks",
            f"the floor with {count} do-nothing callbacks (an untracked run's) vs without",
            floor,
            idle,
            float("inf"),
        ),
        compared(
            "P2-profiler",
            f"the floor with {count} do-nothing callbacks and trainlab's profiler (NoProfiling) "
            "vs without",
            floor,
            lean,
            float("inf"),
        ),
        compared("P2-floor", "barebones-Trainer floor vs raw seed loop", raw, floor, float("inf")),
        compared("P2-raw", "seed run untracked vs raw seed loop", raw, ours, float("inf")),
    ]


MLP = ("model=mlp", "model.hidden=[64,64]", "data=synthetic", "data.n_features=20")


def m1_mlp(lab: Trainlab, rows: int, repeats: int) -> list[Result]:
    """An MLP (64, 64) on synthetic rows, one epoch of batches of 256: trainlab's Lightning
    engine against a barebones Trainer fitting the same module over the same batches; and the
    whole in-process run tracked (metrics only, and with the defaults) against untracked. The
    five take turns."""
    options = (*MLP, f"data.n_samples={rows}", "data.batch_size=256", "max_epochs=1")
    samples = take_turns(
        {
            "floor": lambda: lab.floor_fit(options),
            "engine": lambda: lab.engine_fit(options),
            "untracked": lambda: lab.run(*options, "tracking=none"),
            "lean": lambda: lab.run(*options, *LEAN),
            "defaults": lambda: lab.run(*options),
        },
        repeats,
    )
    untracked = samples["untracked"]
    what = f"MLP 64x64, {rows} rows, one epoch of batches of 256"
    return [
        compared(
            "M1", f"{what}: untracked engine vs barebones Trainer", samples["floor"],
            samples["engine"], 1.05,
        ),
        compared(
            "M1-tracked", f"{what}: tracked (metrics only) vs untracked", untracked,
            samples["lean"], 1.10,
        ),
        compared(
            "M1-defaults", f"{what}: tracked (defaults) vs untracked", untracked,
            samples["defaults"], float("inf"),
        ),
    ]  # fmt: skip


def p3_big_data(lab: Trainlab, rows: int, device: str, repeats: int) -> list[Result]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 64, generator=generator).to(device)
    y = (x @ torch.randn(64, 1, generator=generator).to(device)).contiguous()
    batches = baselines.TensorBatches(x, y, 1024, True, 0)
    samples = take_turns(
        {
            "raw": lambda: baselines.raw_big_data_epoch(x, y, 1024),
            "floor": lambda: baselines.lightning_floor(batches, 1, 64, 1, device),
            "ours": lambda: lab.big_data_epoch(x, y, 1024),
        },
        repeats,
    )
    raw, floor, ours = samples["raw"], samples["floor"], samples["ours"]
    name, target = ("P3", 1.05) if device == "cpu" else ("P3-gpu", 1.3)
    what = f"one epoch {rows}x64 float32, batch 1024, {device}"
    if device == "cpu":
        return [
            compared(name, f"{what}, vs barebones-Trainer floor", floor, ours, target),
            compared(f"{name}-raw", f"{what}, vs raw loop", raw, ours, float("inf")),
        ]
    # On a GPU the target is against the raw CUDA loop (no per-step host sync in either).
    return [
        compared(name, f"{what}, vs raw CUDA loop", raw, ours, target),
        compared(f"{name}-floor", f"{what}, vs barebones-Trainer floor", floor, ours, float("inf")),
    ]
