"""`--engine ray`: a real local Ray gives the local engine's runs, row for row and bit for bit."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import ray
from typer.testing import CliRunner

import banditops.simulation
from banditops.cli import app
from banditops.errors import InvalidParameterError
from banditops.simulation.datasets import Dataset
from banditops.simulation.experiment import run_experiment
from banditops.simulation.ray_engine import _gather
from banditops.simulation.settings import default_settings
from banditops.simulation.strategies import RECOMMENDED

runner = CliRunner()
STRATEGIES = ["thompson", "latest"]  # one seeded, one replayed once for every seed


def table(n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                          "kind": rng.choice(["a", "b", "c"], n)})
    signal = frame["x"] + (frame["kind"] == "a") + rng.normal(scale=0.7, size=n)
    frame["label"] = (signal > 0.3).astype(int)
    return frame


def run(*args: str):
    result = runner.invoke(app, ["experiment", *args])
    assert "Traceback" not in result.output
    return result


def test_ray_gives_the_same_runs_csv_as_the_local_engine(tmp_path):
    path = tmp_path / "table.csv"
    table().to_csv(path, index=False)
    common = ["--csv", str(path), "--target", "label", "--seeds", "2", "--scenario", "natural",
              "--scenario", "faulty-release", "--workers", "2",
              *[a for s in STRATEGIES for a in ("--strategy", s)]]
    local = run(*common, "--out", str(tmp_path / "local"))
    assert local.exit_code == 0, local.output
    on_ray = run(*common, "--engine", "ray", "--out", str(tmp_path / "ray"))
    assert on_ray.exit_code == 0, on_ray.output
    assert "replaying" in on_ray.output
    assert not ray.is_initialized()  # the Ray it started is stopped

    runs = pd.read_csv(tmp_path / "local" / "runs.csv")
    assert len(runs) == 2 * len(STRATEGIES) * 2
    thompson = runs[runs["strategy"] == "thompson"].set_index(["scenario", "seed"])
    assert thompson.loc[("natural", 0), "mean_reward"] != thompson.loc[("natural", 1),
                                                                       "mean_reward"]
    for name in ("runs.csv", "summary.csv"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "local" / name).read_text()


def test_a_running_ray_session_is_used_left_running_and_reports_progress():
    frame = table(3000)
    data = Dataset("synthetic", frame[["x", "z", "kind"]], frame["label"], "test")
    plan = [(data, default_settings(data.name, len(data)))]
    options = {"scenarios": ["concept-drift"], "strategies": [RECOMMENDED, "ucb1"],
               "seeds": 2, "workers": 2}
    local = run_experiment(plan, **options)
    events: list[tuple[str, int, int]] = []
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
             log_to_driver=False)
    try:
        on_ray = run_experiment(plan, engine="ray", progress=lambda *e: events.append(e),
                                **options)
        assert ray.is_initialized()  # not ours to stop

        @ray.remote
        def mistaken() -> None:
            raise InvalidParameterError("a user's mistake")

        with pytest.raises(InvalidParameterError, match="a user's mistake"):
            _gather([mistaken.remote()], "replaying", None)  # as itself, not RayTaskError
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(on_ray.runs, local.runs, check_exact=True)
    for phase, total in (("training", 1), ("replaying", 3)):  # ucb1 has no randomness
        mine = [(done, of) for name, done, of in events if name == phase]
        assert mine == [(done, total) for done in range(total + 1)]
    assert on_ray.traffic.keys() == local.traffic.keys()
    for key, (counts, rollbacks) in local.traffic.items():
        assert np.array_equal(on_ray.traffic[key][0], counts)
        assert on_ray.traffic[key][1] == rollbacks


@pytest.mark.parametrize(("args", "message"), [
    (["--address", "auto"], "--address goes with --engine ray"),
    (["--engine", "spark"], "engine must be one of local, ray, got 'spark'"),
    (["--engine", "ray", "--address", "127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1"),
    (["--engine", "ray", "--address", "bogus"], "--address must be auto, HOST:PORT or ray://"),
    (["--engine", "ray", "--address", "http://[::1"], "--address must be auto, HOST:PORT"),
    (["--engine", "ray", "--address", "ray://127.0.0.1:1"], "no Ray cluster answers at ray://"),
])
def test_engine_mistakes_end_in_one_line_before_any_data_is_read(tmp_path, args, message):
    result = run("--csv", str(tmp_path / "missing.csv"), "--target", "y", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "missing.csv" not in result.output  # stopped before reading the table


def test_without_ray_installed_the_error_says_what_to_install(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")
                 or m == "banditops.simulation.ray_engine"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(banditops.simulation, "ray_engine", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ModuleNotFoundError
    result = run("--csv", str(tmp_path / "missing.csv"), "--target", "y", "--engine", "ray")
    assert result.exit_code == 2
    assert "error: --engine ray needs Ray" in result.output
    assert "pip install 'banditops[ray]'" in " ".join(result.output.split())
