"""The demo end to end on the real census data: the broken release is rolled back."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from banditops.cli import app
from banditops.demo import run_demo


def test_demo_rolls_back_the_broken_release(data_dir):
    output = io.StringIO()
    deployment = run_demo(data_dir, requests=12_000, console=Console(file=output, width=150))
    reports = {r.name: r for r in deployment.versions()}
    assert reports["v4"].status == "rolled_back"
    assert reports["v4"].decisions == 0  # launched dark: rolled back before serving anyone
    rollback = next(e for e in deployment.events()
                    if e.kind == "rolled_back" and e.version == "v4")
    gaps = [versus["mean_gap"] for versus in rollback.evidence["versus"].values()]
    assert max(gaps) > 0.1  # worse than the best live version by over 10 points
    assert "rolled_back v4" in output.getvalue()
    served = sum(r.decisions for r in reports.values())
    assert served == 12_000


def test_cli_reports_missing_data_without_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("BANDITOPS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("banditops.simulation.datasets.ADULT_URL", "http://127.0.0.1:9/")
    result = CliRunner().invoke(app, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "error:" in result.output and "adult/adult.data was not found" in result.output
    assert "Traceback" not in result.output
