"""The ``banditops`` command line. User mistakes end in one clear message, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from banditops.errors import BanditOpsError

app = typer.Typer(help="Deploy model versions with multi-armed bandits.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(width=max(Console().width, 130))
DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="Folder holding adult/ and vehicle-insurance-fraud/ "
    "(default: $BANDITOPS_DATA_DIR, then the user cache).")]


def fail(error: Exception) -> None:
    console.print(f"[bold red]error:[/bold red] {error}")
    raise typer.Exit(2)


@app.command()
def demo(data_dir: DataDir = None,
         requests: Annotated[int, typer.Option(min=2000, help="Requests to stream.")] = 12_000,
         seed: Annotated[int, typer.Option(help="Random seed.")] = 0) -> None:
    """A short live demonstration: four versions on census data, one broken release."""
    from banditops.demo import run_demo

    try:
        run_demo(data_dir, requests=requests, seed=seed, console=console)
    except BanditOpsError as error:
        fail(error)


@app.command()
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
    scenario: Annotated[list[str] | None, typer.Option(
        help="natural, covariate-shift, concept-drift, faulty-release (repeatable; default: "
        "all).")] = None,
    strategy: Annotated[list[str] | None, typer.Option(
        help="Strategies to compare (repeatable; default: all).")] = None,
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
    miss_cost: Annotated[float, typer.Option(
        help="Fraud: cost of a missed fraud in false alarms.")] = 20.0,
    workers: Annotated[int, typer.Option(min=1, help="Processes to use.")] = 2,
    data_dir: DataDir = None,
) -> None:
    """Replay the study: every strategy over real data, scenarios and seeds; write a report."""
    from banditops.simulation.command import run_experiment_command

    try:
        run_experiment_command(
            datasets=dataset, csv=csv, target=target, positive=positive, order_by=order_by,
            scenarios=scenario, strategies=strategy, granularity=granularity, seeds=seeds,
            out=out, rows=rows, chunk_size=chunk_size, delay=delay, max_live=max_live,
            miss_cost=miss_cost, workers=workers, data_dir=data_dir, console=console)
    except BanditOpsError as error:
        fail(error)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(
        help="TOML config (see banditops.service.config); without it, a demo deployment "
        "on the census data.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    db: Annotated[str | None, typer.Option(
        help="Database URL, overriding the config (default sqlite:///banditops.db).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the HTTP service (FastAPI under uvicorn); OpenAPI docs at /docs."""
    import uvicorn

    from banditops.service.app import create_app
    from banditops.service.config import load_config
    from banditops.service.demo_config import demo_config

    try:
        if config is not None:
            settings = load_config(config)
            if db:
                settings.database = db
            if not settings.api_keys:
                raise BanditOpsError(f"{config}: no api_keys configured; nobody could call "
                                     "the service")
        else:
            database = db or "sqlite:///banditops.db"
            console.print("No --config: starting the demo deployment 'adult' "
                          "(two versions trained on census data).")
            settings, keys = demo_config(data_dir, database, Path("banditops-models"))
            console.print(f"client key: {keys['client']}\nadmin key:  {keys['admin']}")
        application = create_app(settings)
    except BanditOpsError as error:
        fail(error)
    console.print(f"banditops serving on http://{host}:{port} (docs at /docs), "
                  f"database {application.state.store.safe_url}")
    import gc

    gc.freeze()  # the models and app are long-lived: keep them out of GC pauses
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


@app.callback()
def main() -> None:
    """banditops: route traffic between model versions, learn, roll back bad releases."""


if __name__ == "__main__":
    app()
