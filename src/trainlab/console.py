"""What a run prints: the seed's lines (`epoch i, w = ..., loss = ...`), predictions, and for
long runs a one-line progress bar instead of thousands of lines.

`print_every` None (the default) prints every 10th step for runs of up to 1000 steps; longer
runs show the progress bar on a terminal, and about 20 evenly spaced lines elsewhere (a log file
still shows progress). The bar is redrawn at most 4 times a second and reads the loss only then
(one host sync per redraw on a GPU), so it costs nothing measurable.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

SHORT_RUN_STEPS = 1000
SHORT_RUN_EVERY = 10
LONG_RUN_LINES = 20
REFRESH_SECONDS = 0.25


def format_prediction(x: torch.Tensor, pred: torch.Tensor, spec: str = " .3f") -> str:
    """`f(5) =  9.433` for one row of one feature, as note 20 prints it; rows listed otherwise.

    `spec` is the number format: note 20 prints " .3f"; notes 17 and 18 print the whole float.
    """
    parts = []
    for row, out in zip(x.tolist(), pred.tolist(), strict=True):
        arg = f"{row[0]:g}" if len(row) == 1 else ", ".join(f"{v:g}" for v in row)
        value = (
            f"{out[0]:{spec}}"
            if len(out) == 1
            else "[" + ", ".join(f"{v:{spec.strip()}}" for v in out) + "]"
        )
        parts.append(f"f({arg}) = {value}")
    return "; ".join(parts)


def format_weights(module: torch.nn.Module) -> str:
    """The first weight, as the seed prints it; a short list for a few; a norm for many."""
    weight = next(module.parameters()).detach().reshape(-1)
    if weight.numel() == 1:
        return f"w = {weight.item():.8g}"
    if weight.numel() <= 4:
        return "w = [" + ", ".join(f"{v:.6g}" for v in weight.tolist()) + "]"
    return f"|w| = {weight.norm().item():.6g}"


class ConsoleReporter:
    """Decides, per step, whether the seed's line is printed, and drives the progress bar."""

    def __init__(
        self,
        print_every: int | None,
        progress_bar: bool | None,
        total_steps: int,
        first_step: int = 0,
        terminal: bool | None = None,
    ) -> None:
        terminal = sys.stderr.isatty() if terminal is None else terminal
        long_run = total_steps > SHORT_RUN_STEPS
        if print_every is None:
            if not long_run:
                print_every = SHORT_RUN_EVERY
            else:
                print_every = 0 if terminal else math.ceil(total_steps / LONG_RUN_LINES)
        self.every = print_every
        show_bar = progress_bar if progress_bar is not None else (long_run and self.every == 0)
        self.bar: tqdm | None = None
        if show_bar and terminal:
            self.bar = tqdm(
                total=total_steps, initial=first_step, unit="step", dynamic_ncols=True, leave=True
            )
        self._next_refresh = 0.0

    def wants_line(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)  # above the bar, which is redrawn below it
        else:
            print(text)

    def tick(self, step: int, epoch: int, loss: Callable[[], float]) -> None:
        """After optimizer step `step` (0-based): redraw the bar when it is due."""
        if self.bar is None:
            return
        now = time.monotonic()
        if now < self._next_refresh:
            return
        self._next_refresh = now + REFRESH_SECONDS
        self.bar.set_postfix_str(f"epoch {epoch}, loss {loss():.6g}", refresh=False)
        self.bar.update(step + 1 - self.bar.n)

    def close(self, step: int | None = None) -> None:
        if self.bar is not None:
            if step is not None:
                self.bar.update(step - self.bar.n)
            self.bar.close()
            self.bar = None
