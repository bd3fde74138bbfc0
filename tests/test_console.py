"""What a run prints: the seed's lines for short runs, a progress bar for long ones."""

from __future__ import annotations

from trainlab.console import ConsoleReporter


def test_progress_bar_on_a_terminal_instead_of_thousands_of_lines(capsys):
    quiet = ConsoleReporter(None, None, total_steps=50_000, terminal=True)
    assert quiet.bar is not None and not quiet.wants_line(0) and not quiet.wants_line(10)
    for step in range(50_000):
        quiet.tick(step, step, lambda: 0.5)
    quiet.close(50_000)
    bar = capsys.readouterr().err
    assert "50000/50000" in bar and "loss 0.5" in bar
    assert bar.count("\r") < 50  # redrawn a few times a second, not at every step
    short = ConsoleReporter(None, None, total_steps=100, terminal=True)
    assert short.bar is None and short.wants_line(10) and not short.wants_line(5)
    chosen = ConsoleReporter(1, None, total_steps=50_000, terminal=True)
    assert chosen.bar is None and chosen.wants_line(7)  # print_every given: lines, no bar
