"""Progress when output is not a terminal: plain lines, at a bounded rate, as it happens."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from banditops.simulation.command import ProgressLines
from banditops.simulation.strategies import RECOMMENDED
from tests.tables import synthetic_table

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(training|replaying) ([\d,]+)/([\d,]+) (streams|runs) \((\d+) s\)$")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_a_line_per_twentieth_and_the_last_one():
    out, clock = io.StringIO(), Clock()
    progress = ProgressLines(Console(file=out, width=200), clock=clock)
    for done in range(481):
        progress("replaying", done, 480)
        clock.now += 0.01
    shown = lines(out)
    assert shown[0] == "replaying 0/480 runs (0 s)"
    assert shown[1] == "replaying 24/480 runs (0 s)"
    assert shown[-1] == "replaying 480/480 runs (5 s)"
    assert len(shown) == 21  # 0, then every 24, 480 among them


def test_a_slow_phase_prints_every_ten_seconds_and_repeats_nothing():
    out, clock = io.StringIO(), Clock()
    progress = ProgressLines(Console(file=out, width=200), clock=clock)
    progress("training", 0, 8)
    progress("training", 0, 8)  # the same count again: nothing new to say
    clock.now += 12
    progress("training", 1, 8)  # 1/8 is a new eighth anyway
    clock.now += 3
    progress("replaying", 0, 1000)  # phases keep their own clocks
    progress("replaying", 1, 1000)  # not 5 % yet, not 10 s since the last line
    clock.now += 11
    progress("replaying", 2, 1000)  # 11 s since the last replaying line
    progress("training", 2, 8)
    assert lines(out) == ["training 0/8 streams (0 s)", "training 1/8 streams (12 s)",
                          "replaying 0/1,000 runs (0 s)", "replaying 2/1,000 runs (11 s)",
                          "training 2/8 streams (26 s)"]


def test_a_piped_run_prints_progress_as_it_goes(tmp_path):
    """stdout a pipe: plain progress lines, the first long before the replay ends (a
    block-buffered or bar-only output would deliver them all at once, at the end)."""
    table = synthetic_table(tmp_path / "table.csv", rows=3_000)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "COLUMNS": "200"}
    command = [sys.executable, "-m", "banditops.cli", "experiment", "--csv", str(table),
               "--target", "label", "--chunk-size", "500", "--scenario", "natural",
               "--strategy", RECOMMENDED, "--strategy", "thompson", "--seeds", "3",
               "--workers", "1", "--out", str(tmp_path / "out")]
    arrived: list[tuple[float, str]] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            arrived.append((time.monotonic(), line.rstrip("\n")))
    output = "\n".join(line for _, line in arrived)
    assert process.returncode == 0, output
    assert "\x1b[" not in output  # no escape codes
    assert not re.search(r"^(training|replaying) +━", output, re.M)  # no bar
    progress = [(at, LINE.match(line)) for at, line in arrived if LINE.match(line)]
    phases = [match[1] for _, match in progress]
    assert phases == ["training"] * phases.count("training") + ["replaying"] * phases.count(
        "replaying")
    first, last = progress[0], progress[-1]
    assert first[1][0] == "training 0/1 streams (0 s)"
    assert last[1].group(1, 2, 3) == ("replaying", "6", "6")  # 2 strategies x 3 seeds
    assert last[0] - first[0] > 0.3, "the lines arrived together, not as the run went"
