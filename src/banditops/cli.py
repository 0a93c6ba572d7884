"""The ``banditops`` command line. User mistakes end in one clear message, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from banditops.errors import BanditOpsError

app = typer.Typer(help="Deploy model versions with multi-armed bandits.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
# Piped into a file or a CI log, wide tables stay whole rather than fold into ellipses.
console = Console(width=max(Console().width, 130 if Console().is_terminal else 200))
errors = Console(stderr=True, width=max(Console().width, 130))
DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Folder holding adult/ and vehicle-insurance-fraud/ "
    "(default: $BANDITOPS_DATA_DIR, then the user cache).")]


def fail(error: Exception) -> None:
    """One line (never wrapped, no markup taken from the message), exit code 2."""
    message = " ".join(str(error).split())  # a database error's text spans lines
    errors.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


@app.command(epilog="Example: banditops demo --requests 20000 --seed 1")
def demo(data_dir: DataDir = None,
         requests: Annotated[int, typer.Option(min=2000, help="Requests to stream.")] = 12_000,
         seed: Annotated[int, typer.Option(help="Random seed.")] = 0) -> None:
    """A short live demonstration: four versions on census data, one broken release."""
    from banditops.demo import run_demo

    try:
        run_demo(data_dir, requests=requests, seed=seed, console=console)
    except BanditOpsError as error:
        fail(error)


@app.command(epilog=(
    "Examples: banditops experiment --dataset adult --seeds 2 --out results  |  "
    "banditops experiment --csv claims.csv --target fraud --reward cost --miss-cost 20 "
    "--order-by date  |  banditops experiment --engine ray --address HEAD:6379 --seeds 50"))
def experiment(
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="adult and/or vehicle-insurance-fraud (repeatable; default: both, "
        "unless --csv is given).")] = None,
    csv: Annotated[Path | None, typer.Option(help="Replay any CSV table instead.")] = None,
    target: Annotated[str | None, typer.Option(help="With --csv: the label column.")] = None,
    positive: Annotated[str | None, typer.Option(
        help="With --csv: the positive class (needed unless the target is 0/1, true/false "
        "or yes/no).")] = None,
    order_by: Annotated[str | None, typer.Option(
        help="With --csv: comma-separated columns giving time order (default: file order).")
    ] = None,
    sep: Annotated[str | None, typer.Option(
        help="With --csv: the field separator (default: sniffed among , ; tab |).")] = None,
    scenario: Annotated[list[str] | None, typer.Option(
        help="natural, covariate-shift, concept-drift, faulty-release (repeatable; default: "
        "all).")] = None,
    strategy: Annotated[list[str] | None, typer.Option(
        help="Strategies to compare (repeatable; default: every context-free one).")] = None,
    contextual: Annotated[bool, typer.Option(
        "--contextual", help="Also the contextual strategies (linear and tree routers on the "
        "request's features; several times slower).")] = False,
    granularity: Annotated[str, typer.Option(
        help="request: route every request; chunk: one decision per chunk (the study's).")
    ] = "request",
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Seeds per strategy.")] = 5,
    out: Annotated[Path, typer.Option(help="Folder for CSVs, plots and report.html.")
                   ] = Path("results"),
    rows: Annotated[int | None, typer.Option(
        min=1000, help="Replay only the first ROWS rows of each dataset (quick runs).")] = None,
    chunk_size: Annotated[int | None, typer.Option(min=50, help="Rows per chunk.")] = None,
    delay: Annotated[int | None, typer.Option(min=0, help="Label delay in requests.")] = None,
    max_live: Annotated[int, typer.Option(min=2, help="Most versions live at once.")] = 4,
    reward: Annotated[str | None, typer.Option(
        help="accuracy or cost (default: accuracy; the fraud dataset: cost).")] = None,
    cost: Annotated[str | None, typer.Option(
        help="With --reward cost: what each outcome costs, e.g. tp=0,fp=1,fn=20,tn=0 "
        "(any unit; outcomes left out cost 0).")] = None,
    miss_cost: Annotated[float | None, typer.Option(
        help="With --reward cost: a missed positive costs this many false alarms (fraud "
        "dataset: 20; any other table: negatives per positive).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Processes to use (with --engine ray and no --address: the local Ray's "
        "CPUs).")] = 2,
    engine: Annotated[str, typer.Option(
        help="local: processes on this machine; ray: Ray tasks (pip install "
        "'banditops\\[ray]').")] = "local",
    address: Annotated[str | None, typer.Option(
        help="With --engine ray: the cluster to join, HOST:PORT or auto (default: start a "
        "local Ray).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Replay the study: every strategy over real data, scenarios and seeds; write a report."""
    from banditops.simulation.command import run_experiment_command
    from banditops.simulation.strategies import CONTEXT_FREE, STRATEGIES

    if contextual:
        strategy = list(strategy or CONTEXT_FREE) + [
            name for name, s in STRATEGIES.items() if s.contextual]
    try:
        run_experiment_command(
            datasets=dataset, csv=csv, target=target, positive=positive, order_by=order_by,
            sep=sep,
            scenarios=scenario, strategies=strategy, granularity=granularity, seeds=seeds,
            out=out, rows=rows, chunk_size=chunk_size, delay=delay, max_live=max_live,
            miss_cost=miss_cost, workers=workers, data_dir=data_dir, console=console,
            reward=reward, cost=cost, engine=engine, address=address)
    except BanditOpsError as error:
        fail(error)


@app.command(epilog=(
    "Examples: banditops evaluate log.parquet --policy thompson  |  banditops evaluate "
    "log.csv --policy ucb1 --param c=0.5 --guardrail margin=0.02  |  banditops evaluate "
    "--db sqlite:///banditops.db --deployment adult --policy epsilon-greedy --json"))
def evaluate(
    log: Annotated[Path | None, typer.Argument(
        help="Decision log, .parquet or .csv (see the README, 'Off-policy evaluation').",
        show_default=False)] = None,
    policy: Annotated[str, typer.Option(help="Target policy, as in a config (thompson, "
                                        "ucb1, epsilon-greedy, uniform, ...).")] = "thompson",
    param: Annotated[list[str] | None, typer.Option(
        help="A policy parameter NAME=VALUE (repeatable), e.g. --param c=0.5.")] = None,
    guardrail: Annotated[list[str] | None, typer.Option(
        help="Run the target with a guardrail: 'on' for the defaults, or settings NAME=VALUE "
        "(repeatable), e.g. --guardrail margin=0.02 --guardrail min_samples=100.")] = None,
    estimator: Annotated[list[str] | None, typer.Option(
        help="ips, snips, dr, switch-dr (repeatable; default: all).")] = None,
    seed: Annotated[int, typer.Option(help="The target's random seed.")] = 0,
    learn: Annotated[str, typer.Option(
        help="log: the target learns every logged reward as it arrives; none: it never "
        "learns.")] = "log",
    delay: Annotated[int, typer.Option(
        min=0, help="Without a feedback_time column: decisions between a decision and its "
        "feedback.")] = 0,
    db: Annotated[str | None, typer.Option(
        help="Read the log from the service's database instead (with --deployment).")] = None,
    deployment: Annotated[str | None, typer.Option(help="With --db: the deployment.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Estimate what another policy or guardrail would have earned on logged traffic.

    IPS, self-normalised IPS, doubly robust and switch-DR, each with a 95% interval and its
    effective sample size, and a warning where the log lacks support."""
    from banditops.ope.command import run_evaluate_command

    try:
        run_evaluate_command(log_path=log, db=db, deployment=deployment, policy=policy,
                             params=param or [], guardrail=guardrail, estimators=estimator,
                             seed=seed, learn=learn, delay=delay, as_json=json_output,
                             console=console)
    except BanditOpsError as error:
        fail(error)


@app.command("evaluate-check", epilog=(
    "Examples: banditops evaluate-check --seeds 100 --out results/ope  |  "
    "banditops evaluate-check --dataset vehicle-insurance-fraud --seeds 5 --rows 6000"))
def evaluate_check(
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="adult and/or vehicle-insurance-fraud (default: both).")] = None,
    scenario: Annotated[list[str] | None, typer.Option(
        help="Scenarios (repeatable; default: all).")] = None,
    seeds: Annotated[int, typer.Option(min=1, max=1000, help="Seeds per stream.")] = 100,
    learning_seeds: Annotated[int | None, typer.Option(
        min=0, help="Seeds (the first ones) on which the targets also learn from the log, "
        "as banditops evaluate does (a replay per target and logger each); default: 10, "
        "or --seeds if fewer.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the CSV and JSON results.")
                   ] = Path("results/ope"),
    rows: Annotated[int | None, typer.Option(
        min=1000, help="Only the first ROWS rows of each dataset (quick runs).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes to use.")] = 2,
    export_logs: Annotated[bool, typer.Option(
        "--export-logs", help="Also write seed 0's decision log of every logger and stream "
        "(Parquet, with features) under OUT/logs.")] = False,
    learning_only: Annotated[bool, typer.Option(
        "--learning-only", help="Only the learning walks (on --learning-seeds seeds), no "
        "frozen phase.")] = False,
    from_runs: Annotated[Path | None, typer.Option(
        help="Replay nothing: the table and outputs again from a run's ope_runs.csv (or its "
        "ope_runs_frozen.csv checkpoint).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Validate the off-policy estimators in the replay, against each target's true value.

    Log traffic under uniform and epsilon-greedy routing, estimate the other strategies from
    it, compare with their true replay value."""
    from banditops.simulation.ope_command import run_check_command

    try:
        run_check_command(datasets=dataset, scenarios=scenario, seeds=seeds,
                          learning_seeds=learning_seeds, workers=workers, out=out, rows=rows,
                          data_dir=data_dir, export_logs=export_logs, console=console,
                          from_runs=from_runs, frozen=not learning_only)
    except BanditOpsError as error:
        fail(error)


@app.command(epilog=(
    "Examples: banditops serve  (a demo deployment on census data)  |  "
    "banditops serve --config banditops.toml --host 0.0.0.0 --port 8000 "
    "--db postgresql+psycopg://user@db/banditops"))
def serve(
    config: Annotated[Path | None, typer.Option(
        help="TOML config (see examples/config.toml and the README's Config reference); "
        "without it, a demo deployment on the census data.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    db: Annotated[str | None, typer.Option(
        help="Database URL, overriding the config (default sqlite:///banditops.db).")] = None,
    data_dir: DataDir = None,
    log_level: Annotated[str, typer.Option(
        help="debug, info (one access line per request), warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(
        help="text (readable) or json (one object per line, for log shippers).")] = "text",
) -> None:
    """Run the HTTP service (FastAPI under uvicorn); dashboard at /dashboard, API docs at /docs.

    The port is bound and the database and models are loaded before serving, so a
    mistake (config, keys, database, busy port) is one `error:` line and exit code 2."""

    import uvicorn
    from pydantic import ValidationError

    from banditops.service import logs
    from banditops.service.app import create_app
    from banditops.service.config import describe_errors

    try:
        logs.configure(log_level, log_format)
    except ValueError as error:
        fail(error)
    sock = None
    try:
        sock = _listen(host, port)  # first: the demo trains models before it is configured
        settings = _serve_config(config, db, data_dir)
        application = create_app(settings)
        application.state.workers.startup()
    except (BanditOpsError, ValidationError) as error:
        if sock is not None:
            sock.close()
        fail(error if isinstance(error, BanditOpsError)
             else BanditOpsError(f"invalid configuration: {describe_errors(error.errors())}"))
    console.print(f"banditops serving on http://{host}:{port} (dashboard at /dashboard, "
                  "API docs at /docs), "
                  f"database {application.state.store.safe_url}", soft_wrap=True)
    import gc

    gc.freeze()  # the models and app are long-lived: keep them out of GC pauses
    from banditops.service.asgi import header_timeout_protocol

    server = uvicorn.Server(uvicorn.Config(
        application, log_level="warning", access_log=False, lifespan="on",
        http=header_timeout_protocol(settings.body_timeout_seconds),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_seconds))  # type: ignore[arg-type]
    server.run(sockets=[sock])


@app.command("export-log", epilog=(
    "Examples: banditops export-log --db sqlite:///banditops.db --deployment main "
    "--out main.parquet  |  banditops export-log --db postgresql+psycopg://user@db/banditops "
    "--deployment main --out june.csv --since 1748736000 --until 1751328000"))
def export_log(
    db: Annotated[str, typer.Option(help="The service's database URL (read only).")],
    deployment: Annotated[str, typer.Option(help="The deployment whose decisions to write.")],
    out: Annotated[Path, typer.Option(help="The file: .parquet or .csv.")],
    since: Annotated[float | None, typer.Option(
        help="Decisions made at or after this Unix time.")] = None,
    until: Annotated[float | None, typer.Option(
        help="Decisions made before this Unix time.")] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="At most this many decisions, oldest first (default: all).")] = None,
) -> None:
    """Write a deployment's decision log from the service's database, for banditops evaluate.

    The same file as GET /v1/deployments/{name}/decisions/export."""
    import time

    from banditops.ope.database import open_log_database
    from banditops.store.export import check_deployment, format_of
    from banditops.store.export import export_log as write_log

    started = time.perf_counter()
    store = None
    try:
        format_of(out)
        store = open_log_database(db)
        check_deployment(store, deployment)
        plan = write_log(store, deployment, out, since=since, until=until, limit=limit)
    except (BanditOpsError, OSError) as error:
        fail(error)
    finally:
        if store is not None:
            store.close()
    more = " (the range holds more: raise --limit)" if plan.truncated else ""
    console.print(f"{plan.rows:,} decisions of {deployment} written to {out} "
                  f"({out.stat().st_size:,} bytes, {len(plan.features)} features, "
                  f"{time.perf_counter() - started:.1f} s){more}", soft_wrap=True,
                  markup=False)


def _serve_config(config: Path | None, db: str | None, data_dir: Path | None):
    from banditops.service.config import check_database_url, load_config

    if db:
        check_database_url(db)  # a clear error that never echoes a password
    if config is not None:
        settings = load_config(config)
        if db:
            settings.database = db
        if not settings.api_keys:
            raise BanditOpsError(f"{config}: no api_keys configured; nobody could call "
                                 "the service")
        return settings
    from banditops.demo_config import demo_config

    console.print("No --config: starting the demo deployment 'adult' "
                  "(two versions trained on census data).")
    settings, keys = demo_config(data_dir, db or "sqlite:///banditops.db",
                                 Path("banditops-models"))
    console.print(f"client key: {keys['client']}\nadmin key:  {keys['admin']}", soft_wrap=True,
                  markup=False)
    return settings


def _listen(host: str, port: int):
    """A bound socket for uvicorn: a busy port is a clear error before anything starts."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise BanditOpsError(f"cannot listen on {host}:{port}: "
                             f"{error.strerror or error}") from None
    return sock


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"banditops {version('banditops')}")
        raise typer.Exit()


@app.callback(epilog="Example: banditops experiment --help")
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """banditops: route traffic between model versions, learn, roll back bad releases."""


if __name__ == "__main__":
    app()
