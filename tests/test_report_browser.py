"""The report of a CSV run, opened in a real browser (Debian's Chromium): it renders, and
what it says matches the run.

One small run per module (``csv_run``); each test opens its report in a fresh tab. To check
another statement of the report against the run, add a test that reads ``report_text`` and
asserts with :func:`tests.browser.states`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from banditops.cli import app
from banditops.simulation.scenarios import make_scenario
from banditops.simulation.strategies import RECOMMENDED
from banditops.simulation.tables import load_csv
from tests.browser import forbid_network, image_sizes, png_size, states, visible_text
from tests.tables import synthetic_table


@dataclass(frozen=True)
class CsvRun:
    """What the run was asked for, and where it left its results."""

    dataset: str
    rows: int
    chunk_size: int
    delay: int
    max_live: int
    seeds: int
    strategies: tuple[str, ...]
    out: Path
    output: str  # what the command printed


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> CsvRun:
    """``banditops experiment --csv`` on a synthetic 6,000-row table, every default scenario,
    two strategies (one the recommended), two seeds, a chunk size that is not the default."""
    folder = tmp_path_factory.mktemp("csv_run")
    run = CsvRun(dataset="payments", rows=6_000, chunk_size=400, delay=25, max_live=3, seeds=2,
                 strategies=(RECOMMENDED, "ucb1"), out=folder / "results", output="")
    table = synthetic_table(folder / f"{run.dataset}.csv", rows=run.rows)
    result = CliRunner().invoke(app, [
        "experiment", "--csv", str(table), "--target", "label",
        "--chunk-size", str(run.chunk_size), "--delay", str(run.delay),
        "--max-live", str(run.max_live), "--seeds", str(run.seeds),
        *(a for s in run.strategies for a in ("--strategy", s)), "--out", str(run.out)])
    assert result.exit_code == 0, result.output
    assert f"chunks of {run.chunk_size:,}" in result.output  # the run used what it was given
    return CsvRun(**{**run.__dict__, "output": result.output})


@pytest.fixture
def report_page(page, csv_run):
    """The run's report.html in a tab that may fetch nothing from the network."""
    aborted = forbid_network(page)
    page.goto((csv_run.out / "report.html").as_uri())
    yield page
    assert aborted == [], f"the report fetched {aborted}"


@pytest.fixture
def report_text(report_page) -> str:
    return visible_text(report_page)


def test_the_report_renders_with_its_plots(report_page, csv_run, tmp_path):
    sizes = image_sizes(report_page)
    assert len(sizes) == 3
    assert all(width > 500 and height > 200 for width, height in sizes), sizes
    shot = tmp_path / "report.png"
    report_page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    width, height = png_size(data)
    assert width == report_page.viewport_size["width"]
    assert 3_000 < height < 60_000  # the whole report: tables and three plots, not one screen
    assert len(data) > 100_000  # not a blank page
    if keep := os.environ.get("BANDITOPS_SCREENSHOTS"):  # to look at it: a folder to copy to
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report_csv_run.png")


def test_the_report_names_the_table_and_its_size(report_text, csv_run):
    assert f"{csv_run.dataset} / natural" in report_text
    assert states(report_text, csv_run.rows, "rows")
    assert f"{csv_run.seeds} seeds" in report_text
    for strategy in csv_run.strategies:
        assert strategy in report_text


def test_the_report_gives_the_chunk_size_the_run_used(report_text, csv_run):
    assert states(report_text, csv_run.chunk_size, "chunk")


def test_the_protocol_describes_this_run_and_no_other(report_text, csv_run):
    """Every figure in the protocol comes from the run: its table, chunking, delay, versions
    live, reward, and each scenario's driver, segment, drift row and faulty versions."""
    data, _ = load_csv(csv_run.out.parent / f"{csv_run.dataset}.csv", "label")
    labels = data.labels.to_numpy()
    protocol = report_text[report_text.index("Protocol"):report_text.index("Glossary")]
    shift = make_scenario("covariate-shift", data.name, data.features, labels)
    drift = make_scenario("concept-drift", data.name, data.features, labels)
    releases = len(range(csv_run.chunk_size, csv_run.rows, 2 * csv_run.chunk_size))
    faulty = ", ".join(f"v{i + 1}" for i in range(releases) if i % 3 == 2)
    for fact in (f"{csv_run.rows:,} rows", f"{int(labels.sum()):,} positive",
                 f"{-(-csv_run.rows // csv_run.chunk_size)} chunks of "
                 f"{csv_run.chunk_size:,} rows",
                 f"labels come back {csv_run.delay} requests late",
                 f"releases per scenario: natural: {releases}",
                 "At most three versions are live", "Reward: accuracy",
                 f"rows ordered by {shift.driver}, the most informative feature",
                 f"labels flip for {drift.segment} from row {drift.drift_at:,}",
                 f"seeds ({csv_run.seeds} here)",
                 f"Every one of the {len(csv_run.strategies)} strategies"):
        assert fact in protocol, fact
    assert faulty and all(f"{v}-" in protocol for v in faulty.split(", "))
    for other_run in ("Adult", "fraud", "age", "four versions", "8,000 rows"):
        assert other_run not in protocol, other_run
