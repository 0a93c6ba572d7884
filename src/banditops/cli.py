"""The ``banditops`` command line. User mistakes end in one clear message, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from banditops.errors import BanditOpsError

app = typer.Typer(help="Deploy model versions with multi-armed bandits.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(width=max(Console().width, 110))
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


@app.callback()
def main() -> None:
    """banditops: route traffic between model versions, learn, roll back bad releases."""


if __name__ == "__main__":
    app()
