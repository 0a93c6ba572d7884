"""``banditops evaluate-check``: validate the off-policy estimators in the replay (see
:mod:`banditops.simulation.ope_check`), with progress, a table and CSV / JSON outputs."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from banditops.errors import InvalidParameterError
from banditops.simulation.command import ProgressLines, _check_out, _datasets
from banditops.simulation.ope_check import (
    GOAL_COVERAGE,
    GOAL_ERROR,
    LOGGERS,
    TARGETS,
    CheckResult,
    by_target,
    export_sample_logs,
    goal_met,
    run_check,
    summarise,
    write_check,
)
from banditops.simulation.settings import default_settings


def summarise_runs(path: Path, out: Path, console: Console) -> CheckResult:
    """The table and outputs again from a run's ``ope_runs.csv`` (or its frozen checkpoint)."""
    if not path.is_file():
        raise InvalidParameterError(f"--from-runs {path}: no such file")
    runs = pd.read_csv(path, low_memory=False)
    missing = {"logger", "mode", "estimator", "target", "covered", "relative_error"} - set(
        runs.columns)
    if missing:
        raise InvalidParameterError(f"--from-runs {path}: not an evaluate-check runs file "
                                    f"(no {', '.join(sorted(missing))})")
    result = CheckResult(runs, summarise(runs), by_target(runs), {}, {}, {})
    print_check(result, console)
    meta = {"from_runs": str(path), "verdicts": {mode: goal_met(result.summary, mode)
                                                 for mode in result.summary["mode"].unique()}}
    paths = write_check(runs, result.summary, result.targets, meta, out)
    console.print(f"Wrote {escape(', '.join(str(p) for p in paths))}", soft_wrap=True)
    return result


DEFAULT_LEARNING_SEEDS = 10  # a replay per target and logger each: the costly mode


def run_check_command(*, datasets: list[str] | None, scenarios: list[str] | None, seeds: int,
                      learning_seeds: int | None, workers: int, out: Path, rows: int | None,
                      data_dir: Path | None, export_logs: bool, console: Console,
                      from_runs: Path | None = None, frozen: bool = True) -> CheckResult:
    started = time.perf_counter()
    if from_runs is not None:
        _check_out(out)
        return summarise_runs(from_runs, out, console)
    if learning_seeds is None:
        learning_seeds = min(DEFAULT_LEARNING_SEEDS, seeds)
    if learning_seeds < 0 or learning_seeds > seeds:
        raise InvalidParameterError(
            f"--learning-seeds must be between 0 and --seeds ({seeds}), got {learning_seeds}")
    _check_out(out)
    loaded = _datasets(datasets, None, None, None, None, rows, data_dir, console)
    plan = [(data, default_settings(data.name, len(data))) for data in loaded]
    for data, settings in plan:  # before any training, in terms of the options it has
        if settings.chunk_size * 2 > len(data):
            raise InvalidParameterError(
                f"--rows {len(data):,} is too few for {data.name}: it is replayed in chunks of "
                f"{settings.chunk_size:,} rows and needs at least two (--rows "
                f"{settings.chunk_size * 2:,}; several releases need about "
                f"{settings.chunk_size * 6:,})")
    console.print(f"Checking off-policy evaluation: loggers {', '.join(LOGGERS)}; targets "
                  f"{', '.join(TARGETS)}; {seeds} seed{'s' if seeds != 1 else ''} (the learning "
                  f"walks on the first {learning_seeds}).", soft_wrap=True)
    def checkpoint(runs: pd.DataFrame) -> None:
        out.mkdir(parents=True, exist_ok=True)
        runs.to_csv(out / "ope_runs_frozen.csv", index=False)

    options = {"seeds": seeds, "learning_seeds": learning_seeds, "workers": workers,
               "scenarios": scenarios, "checkpoint": checkpoint, "frozen": frozen}
    if console.is_terminal:
        with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            tasks: dict[str, object] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total)
                bar.update(tasks[phase], completed=done)  # type: ignore[arg-type]

            result = run_check(plan, progress=progress, **options)
    else:
        result = run_check(plan, progress=ProgressLines(console), **options)
    for (dataset, scenario), reason in result.skipped.items():
        console.print(f"[yellow]skipped {escape(dataset)} / {scenario}: {escape(reason)}"
                      "[/yellow]")
    print_check(result, console)
    meta = {"seeds": seeds, "learning_seeds": learning_seeds, "loggers": list(LOGGERS),
            "targets": TARGETS, "streams": [list(k) for k in result.streams],
            "goals": {"median_relative_error": GOAL_ERROR, "coverage": GOAL_COVERAGE},
            "verdicts": {mode: goal_met(result.summary, mode)
                         for mode in result.summary["mode"].unique()},
            "seconds": result.seconds}
    paths = write_check(result.runs, result.summary, result.targets, meta, out)
    if export_logs:
        paths += export_sample_logs(result.streams, out / "logs")
    console.print(f"Wrote {escape(', '.join(str(p) for p in paths[:4]))}"
                  + (f" and {len(paths) - 4} sample logs in {escape(str(out / 'logs'))}"
                     if len(paths) > 4 else ""), soft_wrap=True)
    console.print(f"Done in {time.perf_counter() - started:.0f} s.")
    return result


def _pct(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.1%}"


def print_check(result: CheckResult, console: Console) -> None:
    summary = result.summary
    learning = "learning_path_bias" in summary.columns
    table = Table(title="Off-policy estimates against the targets' true replay value "
                  f"(goals: median relative error <= {GOAL_ERROR:.0%}, 95% interval covers "
                  f">= {GOAL_COVERAGE:.0%})",
                  caption="rel. error: |estimate - true value| / true value, over every "
                  "(stream, target, seed); coverage: share of 95% intervals holding the true "
                  "value; worst cell, cells >= 90%: coverage per (stream, target), the lowest "
                  "and the share at 90% or more; CI width: mean interval width; ESS share: "
                  "effective sample size / rows with a reward; covers learning truth, "
                  "learning-path bias: see the README, 'Validation in the replay'")
    for name in ("logger", "mode", "estimator", "seeds", "median rel. error", "p90 rel. error",
                 "coverage", "worst cell", "cells >= 90%", "CI width", "ESS share"):
        table.add_column(name, justify="left" if name in ("logger", "mode", "estimator")
                         else "right")
    if learning:
        table.add_column("covers learning truth", justify="right")
        table.add_column("learning-path bias", justify="right")
    for row in summary.itertuples(index=False):
        cells = [row.logger, row.mode, row.estimator, str(row.seeds),
                 _pct(row.median_relative_error), _pct(row.p90_relative_error),
                 _pct(row.coverage), _pct(row.worst_cell_coverage), _pct(row.cells_90),
                 f"{row.mean_ci_width:.4f}", _pct(row.mean_ess_share)]
        if learning:
            cells += [_pct(getattr(row, "coverage_of_learning_truth", float("nan"))),
                      "" if pd.isna(getattr(row, "learning_path_bias", float("nan")))
                      else f"{row.learning_path_bias:+.4f}"]
        table.add_row(*cells)
    console.print(table)
    few = int(summary["seeds"].max()) if len(summary) else 0
    if few < 10:  # a coverage over a handful of intervals proves nothing either way
        console.print(f"[yellow]note: {few} seed{'s' if few != 1 else ''}: a smoke test; the "
                      "verdicts below need many seeds (the README's run: --seeds 100)[/yellow]")
    for mode in summary["mode"].unique():
        for logger, verdict in goal_met(summary, mode).items():
            mark = "[green]met[/green]" if verdict["met"] else "[red]missed[/red]"
            console.print(f"{mode:<8} {logger:<20} best {verdict['estimator']:<9} median "
                          f"relative error {verdict['median_relative_error']:.2%}, coverage "
                          f"{verdict['coverage']:.1%}: {mark}", highlight=False)
