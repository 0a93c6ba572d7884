"""``banditops experiment``: load the data, run with a progress bar, print and write results."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from banditops.errors import BanditOpsError, InvalidParameterError
from banditops.simulation.datasets import LOADERS, Dataset, load
from banditops.simulation.experiment import (
    ExperimentResult,
    check_choices,
    check_engine,
    run_experiment,
)
from banditops.simulation.pipeline import release_rows
from banditops.simulation.report import (
    OUTPUTS,
    contextual_verdicts,
    shadow_verdicts,
    verdicts,
    write_outputs,
)
from banditops.simulation.settings import (
    IMBALANCED,
    RewardChoice,
    balanced_miss_cost,
    default_settings,
    parse_costs,
)
from banditops.simulation.strategies import RECOMMENDED
from banditops.simulation.stream import StreamSettings
from banditops.simulation.tables import check_separator, load_csv

# Fewer rows than this and a replay cannot tell strategies apart (a few dozen labels per
# version and chunk); the run still goes ahead, with a warning.
SMALL_TABLE = 5_000
GROUPED = 0.01  # label runs below this share of an unrelated order's: sorted by the target
PROGRESS_UNITS = {"training": "streams", "replaying": "runs"}  # what each phase counts


def _datasets(names: list[str] | None, csv: Path | None, target: str | None,
              positive: str | None, order_by: str | None, rows: int | None,
              data_dir: Path | None, console: Console, sep: str | None = None,
              notes: list[str] | None = None) -> list[Dataset]:
    """The datasets of a run; ``notes`` receives what the report should repeat (a date
    column the rows do not follow)."""
    notes = notes if notes is not None else []
    if csv is None and (target or positive or order_by or sep):
        raise InvalidParameterError(
            "--target, --positive, --order-by and --sep go with --csv PATH")
    if csv is not None and not target:
        raise InvalidParameterError("--csv needs --target COLUMN (the label to predict)")
    if csv is not None and not csv.is_file():
        what = "not a file (a folder, a device or a pipe)" if csv.exists() else "no such file"
        raise InvalidParameterError(f"--csv {csv}: {what}")
    if sep is not None:
        check_separator(sep)
    columns = [c.strip() for c in order_by.split(",") if c.strip()] if order_by else None
    if order_by is not None and not columns:
        raise InvalidParameterError("--order-by needs column names, e.g. --order-by date")
    unknown = [n for n in names or [] if n not in LOADERS]
    if unknown:
        raise InvalidParameterError(f"unknown dataset(s) {unknown}; known: {sorted(LOADERS)}")
    chosen = list(dict.fromkeys(names or ([] if csv else list(LOADERS))))
    datasets = [load(name, data_dir) for name in chosen]
    if csv is not None:
        data, report = load_csv(csv, target, positive=positive, order_by=columns, sep=sep)
        console.print(f"{escape(str(csv))}: {escape(report.describe())}")
        notes += [f"{csv.name}: {note}" for note in report.notes if "--order-by" in note]
        if data.name in chosen:
            data = replace(data, name=f"{data.name}.csv")  # not the built-in of that name
        datasets.append(data)
    if rows is not None:
        datasets = [d.head(rows) for d in datasets]
    return datasets


def run_experiment_command(*, datasets: list[str] | None, csv: Path | None, target: str | None,
                           positive: str | None, order_by: str | None,
                           scenarios: list[str] | None, strategies: list[str] | None,
                           granularity: str, seeds: int, out: Path, rows: int | None,
                           chunk_size: int | None, delay: int | None, max_live: int,
                           miss_cost: float | None, workers: int, data_dir: Path | None,
                           console: Console, sep: str | None = None,
                           reward: str | None = None, cost: str | None = None,
                           engine: str = "local", address: str | None = None
                           ) -> ExperimentResult:
    started = time.perf_counter()
    _check_out(out, csv)
    check_choices(scenarios, strategies, granularity, seeds)  # before loading any data
    check_engine(engine, address)
    choice = RewardChoice(reward, parse_costs(cost) if cost is not None else None, miss_cost)
    if chunk_size is not None and delay is not None and delay >= chunk_size:
        raise InvalidParameterError(
            f"--delay {delay} must be smaller than --chunk-size {chunk_size}: labels arrive "
            "before the next chunk")
    warnings: list[str] = []
    loaded = _datasets(datasets, csv, target, positive, order_by, rows, data_dir, console, sep,
                       warnings)
    plan: list[tuple[Dataset, StreamSettings]] = []
    for data in loaded:
        shares = data.class_shares()
        if not data.binary and choice.wants_cost(data.name in LOADERS):
            raise InvalidParameterError(
                f"{data.name}: a cost reward needs a binary target, and this one has "
                f"{len(data.classes)} classes; pass --positive CLASS to ask 'this class or "
                "not', or use --reward accuracy")
        settings = default_settings(data.name, len(data), chunk_size=chunk_size, delay=delay,
                                    max_live=max_live, reward=choice,
                                    positive_share=float(shares[-1]) if data.binary else None)
        plan.append((data, settings))
        console.print(f"[bold]{escape(data.name)}[/bold]: {len(data):,} rows, "
                      f"{escape(data.describe_classes())}; chunks of "
                      f"{settings.chunk_size:,}, labels {settings.delay:,} requests late, "
                      f"reward {escape(settings.reward_name)}")
        for warning in (_check_size(data, settings), _warn_imbalance(data, settings),
                        _warn_grouped(data)):
            if warning:
                warnings.append(warning)
                console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    try:
        result = _run_with_progress(plan, console, scenarios=scenarios, strategies=strategies,
                                    seeds=seeds, granularity=granularity, workers=workers,
                                    engine=engine, address=address)
    except BanditOpsError:
        raise
    except ValueError as error:  # e.g. a model cannot be trained on this table
        raise BanditOpsError(f"the replay failed: {error}") from None
    for (dataset, scenario), reason in result.skipped.items():
        console.print(f"[yellow]skipped {escape(dataset)} / {scenario}: "
                      f"{escape(reason)}[/yellow]")
    for warning in result.warnings:  # the run's own (strategies it left out)
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    for warning in _faulty_warnings(result):
        warnings.append(warning)
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]")
    result.warnings = [*warnings, *result.warnings]
    print_results(result, console)
    try:
        paths = write_outputs(result, out)
    except OSError as error:  # the disk filled up, the folder went away, ...
        raise BanditOpsError(f"cannot write the results to {out}: "
                             f"{error.strerror or error}") from None
    result.seconds["total (wall)"] = time.perf_counter() - started
    console.print(f"Wrote {escape(', '.join(str(p) for p in paths))}")
    console.print(f"Done in {result.seconds['total (wall)']:.0f} s (training "
                  f"{result.seconds['training (wall)']:.0f} s, replay "
                  f"{result.seconds['replay (wall)']:.0f} s).")
    return result


def _check_out(out: Path, csv: Path | None = None) -> None:
    """The results folder, created and written to before any data is read: a folder that
    cannot be written (a file, a broken link, no permission) is found in a second, not
    after the whole run; and none of its results may overwrite the table replayed."""
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(f"--out {out} exists and is not a folder")
    if csv is not None and csv.is_file() and any(
            (out / name).is_file() and (out / name).samefile(csv) for name in OUTPUTS):
        raise InvalidParameterError(f"--csv {csv} is where --out {out} writes its {csv.name}: "
                                    "the results would overwrite the table; choose another "
                                    "--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise InvalidParameterError(f"--out {out}: cannot write there "
                                    f"({error.strerror or error})") from None


def _run_with_progress(plan: list[tuple[Dataset, StreamSettings]], console: Console,
                       **options) -> ExperimentResult:
    """The run, with bars on a terminal and plain lines otherwise (a pipe, a CI log: bars
    there print nothing until the end)."""
    if not console.is_terminal:
        return run_experiment(plan, progress=ProgressLines(console), **options)
    with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        return run_experiment(plan, progress=progress, **options)


class ProgressLines:
    """Progress as plain lines ("replaying 120/480 runs (40 s)"): when a phase starts, at
    every ``step`` of it or after ``seconds`` without a line, whichever comes first, and when
    it ends, so a piped run shows where it is within seconds without flooding the log."""

    def __init__(self, console: Console, *, step: float = 0.05, seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._console, self._step, self._seconds, self._clock = console, step, seconds, clock
        self._phases: dict[str, tuple[float, int, float]] = {}  # started, last done, last line

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self._clock()
        started, shown, last = self._phases.setdefault(phase, (now, -1, -math.inf))
        steps = max(1, math.ceil(self._step * total))
        due = (shown < 0 or done >= total or done // steps > shown // steps
               or now - last >= self._seconds)
        if done == shown or not due:
            return
        self._phases[phase] = (started, done, now)
        unit = PROGRESS_UNITS.get(phase, "tasks")
        self._console.print(f"{phase} {done:,}/{total:,} {unit} ({now - started:.0f} s)",
                            highlight=False, markup=False)


def _check_size(data: Dataset, settings: StreamSettings) -> str | None:
    """Too few rows for the chunking is an error; few enough to be noise, a warning (with
    the numbers either way)."""
    n, size = len(data), settings.chunk_size
    if settings.delay >= size:
        raise InvalidParameterError(
            f"{data.name}: labels {settings.delay:,} requests late do not arrive within a "
            f"chunk of {size:,}; use a smaller --delay or a larger --chunk-size")
    releases = len(release_rows(n, size, settings.release_every))
    if size * 2 > n:
        raise InvalidParameterError(
            f"{data.name} has {n:,} rows: too few for chunks of {size:,} (a replay needs "
            "at least two chunks: one to train on, one to serve); use a smaller "
            "--chunk-size")
    if n < SMALL_TABLE or releases < 3:
        served = n - size
        return (f"{data.name} has {n:,} rows: in chunks of {size:,} that is "
                f"{math.ceil(n / size)} chunks, {releases} release(s) and about "
                f"{served // max(1, settings.max_live):,} requests per live version. "
                "Strategies then differ by less than the noise between runs"
                + (" (and with fewer than 3 releases faulty-release cannot run)"
                   if releases < 3 else "")
                + ": read the results as a smoke test, not a comparison")
    return None


def _warn_imbalance(data: Dataset, settings: StreamSettings) -> str | None:
    """Accuracy on a target where one class is rare rewards always predicting the common
    one: say so, and what to pass instead."""
    shares = data.class_shares()
    if settings.reward_name != "accuracy" or shares.max() < 1 - IMBALANCED:
        return None
    common = int(shares.argmax())
    if data.binary:
        advice = (f"pass --reward cost --miss-cost {balanced_miss_cost(float(shares[1])):g} "
                  "(a missed positive costs that many false alarms: negatives per positive "
                  "here) or your own --cost tp=,fp=,fn=,tn=")
    else:
        advice = "pass --positive CLASS and --reward cost to weigh one class's misses"
    return (f"{data.name}: {100 * shares[common]:.1f}% of rows are "
            f"{data.classes[common]!r}, so accuracy pays {shares[common]:.2f} for always "
            f"answering that and versions are hard to tell apart; {advice}")


def _warn_grouped(data: Dataset) -> str | None:
    """A table sorted by its target (all of one class, then all of the next) is no stream:
    early versions see one class and later rows another. Its label runs give it away: far
    fewer than the rows would hold in any order unrelated to the label (time-ordered tables
    seen here: 8-74% of that; a table sorted by its target: 0.02%)."""
    labels = data.labels.to_numpy()
    shares = data.class_shares()
    runs = 1 + int((labels[1:] != labels[:-1]).sum())
    expected = 1 + (len(labels) - 1) * (1 - float((shares ** 2).sum()))
    if runs >= GROUPED * expected:
        return None
    return (f"{data.name}: its rows come in {runs:,} runs of one class (about {expected:,.0f} "
            "if their order were unrelated to the target): the table looks sorted by its "
            "target, so each version is trained on one class and serves another; replay it "
            "in time order with --order-by COLUMN")


def _faulty_warnings(result: ExperimentResult) -> list[str]:
    """Where faulty releases earn about as much as healthy ones, no strategy can be
    expected to keep traffic off them: the reward does not tell them apart."""
    out = []
    for (dataset, scenario), info in result.streams.items():
        faulty = [v.production_reward for v in info.versions if v.faulty]
        healthy = [v.production_reward for v in info.versions if not v.faulty]
        if not faulty or not healthy or info.settings is None:
            continue
        gap = float(np.mean(healthy) - np.mean(faulty))
        if gap < info.settings.guardrail_margin:
            out.append(
                f"{dataset} / {scenario}: faulty releases earn {np.mean(faulty):.3f} on "
                f"average against {np.mean(healthy):.3f} for healthy ones (a gap of "
                f"{gap:.3f}, under the {info.settings.guardrail_margin:g} that matters), so "
                "this reward barely tells them apart; with a rare class, a cost reward "
                "(--reward cost) weighs the misses they make")
    return out


def _pct(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.{digits}f}%"


def print_results(result: ExperimentResult, console: Console) -> None:
    for (dataset, scenario), group in result.summary.groupby(["dataset", "scenario"],
                                                              sort=False):
        seeds = int(group["seeds"].iloc[0])
        table = Table(title=f"{escape(dataset)} / {scenario} ({seeds} seed{'s' * (seeds != 1)}, "
                            f"oracle reward {group['oracle_reward'].iloc[0]:.4f}, per-request "
                            f"oracle {group['request_oracle_reward'].iloc[0]:.4f})",
                      title_justify="left", caption_justify="left",
                      caption="calls: model calls per request (served + shadow predictions); "
                      "regret: share of the per-chunk oracle's reward missed; gap: share of the "
                      "gap between the per-chunk and the per-request oracle closed; faulty: "
                      "share of "
                      "traffic to faulty versions; rb delay: requests each faulty version "
                      "served; rollbacks (false alarms): versions taken down (of them, healthy "
                      "ones); switches: how often the version serving most of a chunk "
                      "changes; cost/1,000: cost of 1,000 requests in false alarms; \\[shadow] "
                      "strategies (magenta on a terminal) learn from shadow "
                      "scoring, valid only when the label does not depend on the served "
                      "prediction; contextual strategies (green) route on the request's "
                      "features; means over seeds")
        cost = bool(group["cost_per_1000"].notna().any())
        for column in ("strategy", "reward ±95% CI", "calls", "regret", "gap", "faulty",
                       "rb delay",
                       "rollbacks (false alarms)", "switches", "accuracy", "F1",
                       *(["cost/1,000"] if cost else [])):
            table.add_column(column, justify="left" if column == "strategy" else "right",
                             no_wrap=True)
        for _, row in group.sort_values("mean_reward", ascending=False).iterrows():
            delay = row["rollback_delay"]
            style = ("bold cyan" if row["strategy"] == RECOMMENDED
                     else "green" if row["group"] == "contextual"
                     else "magenta" if row["feedback"] == "shadow" else None)
            table.add_row(
                escape(row["strategy"]),  # "leader[shadow]" is not markup
                f"{row['mean_reward']:.4f} ± {(row['ci_high'] - row['ci_low']) / 2:.4f}",
                f"{row['calls_per_request']:.2f}",
                _pct(row["regret"]), _pct(row["gap_closed"]),
                _pct(row["faulty_traffic_share"]),
                "-" if math.isnan(delay) else f"{delay:,.0f}",
                f"{row['rollbacks']:.1f} ({row['healthy_rollbacks']:.1f})",
                f"{row['switches']:.1f}", f"{row['accuracy']:.4f}", f"{row['f1']:.3f}",
                *([f"{row['cost_per_1000']:,.1f}"] if cost else []), style=style)
        console.print(table)
    _print_verdict(result, console)
    _print_shadow_verdict(result, console)
    _print_contextual_verdict(result, console)


def _print_contextual_verdict(result: ExperimentResult, console: Console) -> None:
    verdict = contextual_verdicts(result)
    if verdict.empty:
        return
    table = Table(title="Contextual routing: the best contextual strategy against the "
                        "per-chunk oracle and the best context-free strategy",
                  title_justify="left", caption_justify="left",
                  caption="regret < 0: above the per-chunk oracle; gap: share of the gap "
                  "between the per-chunk and the per-request oracle closed")
    for column in ("dataset", "scenario", "best contextual", "reward", "regret", "gap",
                   "best context-free", "its reward", "its gap", ">= it"):
        table.add_column(column, no_wrap=column not in ("dataset", "scenario",
                                                         "best contextual",
                                                         "best context-free"))
    for _, row in verdict.iterrows():
        table.add_row(escape(row["dataset"]), row["scenario"],
                      escape(row["best contextual strategy"]), f"{row['reward']:.4f}",
                      _pct(row["regret"], 2), _pct(row["gap closed"]),
                      escape(row["best context-free strategy"]), f"{row['its reward']:.4f}",
                      _pct(row["its gap closed"]),
                      "yes" if row["at least the best context-free"] else "[red]no[/red]")
    console.print(table)


def _print_verdict(result: ExperimentResult, console: Console) -> None:
    verdict = verdicts(result)
    if verdict.empty:
        return
    table = Table(title=f"Recommended strategy ({RECOMMENDED}) against the best of the six "
                        "study strategies", title_justify="left", caption_justify="left",
                  caption="significant: the best study strategy's mean lies above our 95% "
                  "interval; faulty: our share of traffic to faulty versions")
    for column in ("dataset", "scenario", "reward", "best of the six", "its reward",
                   "difference", "significant", "regret", "faulty"):
        table.add_column(column, no_wrap=column not in ("dataset", "scenario",
                                                         "best of the six"))
    for _, row in verdict.iterrows():
        table.add_row(escape(row["dataset"]), row["scenario"], f"{row['reward']:.4f}",
                      row["best study strategy"], f"{row['its reward']:.4f}",
                      f"{row['difference']:+.4f}",
                      "[red]worse[/red]" if row["significantly worse"] else "no",
                      _pct(row["regret"]), _pct(row["faulty share"]))
    console.print(table)


def _print_shadow_verdict(result: ExperimentResult, console: Console) -> None:
    verdict = shadow_verdicts(result)
    if verdict.empty:
        return
    table = Table(title="Shadow scoring against bandit feedback: the best of each",
                  title_justify="left", caption_justify="left",
                  caption="above CI: the best shadow strategy's mean lies above the 95% interval "
                  "of the best bandit-feedback strategy; calls: model calls per request; "
                  "sampled: the best strategy shadow-scoring a sample of requests")
    for column in ("dataset", "scenario", "best shadow", "reward", "calls", "regret", "faulty",
                   "best bandit feedback", "its reward", "above CI", "sampled", "its regret",
                   "its calls"):
        table.add_column(column, no_wrap=column not in ("dataset", "scenario", "best shadow",
                                                         "best bandit feedback", "sampled"))
    for _, row in verdict.iterrows():
        sampled = row.get("best sampled-shadow strategy")
        has_sampled = isinstance(sampled, str)
        table.add_row(escape(row["dataset"]), row["scenario"],
                      escape(row["best shadow strategy"]),
                      f"{row['reward']:.4f}", f"{row['calls/request']:.2f}",
                      _pct(row["regret"], 2), _pct(row["faulty share"]),
                      escape(row["best bandit-feedback strategy"]),
                      f"{row['its reward']:.4f} (≤ {row['its 95% CI high']:.4f})",
                      "yes" if row["above its interval"] else
                      ("[red]worse[/red]" if not row["beats or matches"] else "no"),
                      escape(sampled) if has_sampled else "-",
                      _pct(row["its regret"], 2) if has_sampled else "-",
                      f"{row['its calls/request']:.2f}" if has_sampled else "-")
    console.print(table)
