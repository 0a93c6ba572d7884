"""`banditops experiment` end to end on small subsets of the real data, and on a CSV."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from banditops.cli import app
from banditops.simulation.report import SUMMARY_COLUMNS
from banditops.simulation.strategies import CONTEXT_FREE, RECOMMENDED, STRATEGIES

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def run(*args: str):
    result = runner.invoke(app, ["experiment", *args])
    assert "Traceback" not in result.output
    return result


def test_experiment_on_a_subset_writes_every_output(data_dir, tmp_path):
    out = tmp_path / "results"
    strategies = ["latest", "validation-champion", "thompson", RECOMMENDED, "leader[shadow]"]
    result = run("--dataset", "adult", "--rows", "8000", "--chunk-size", "500",
                 "--scenario", "faulty-release", "--scenario", "natural", "--seeds", "2",
                 *[a for s in strategies for a in ("--strategy", s)], "--workers", "2",
                 "--out", str(out), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "adult / faulty-release" in result.output and "training" in result.output

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == 2 * len(strategies)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * len(strategies) * 2 and set(runs["seed"]) == {0, 1}
    # latest and leader[shadow] have no randomness: replayed once, counted for both seeds.
    for name in ("latest", "leader[shadow]"):
        mine = runs[runs["strategy"] == name].drop(columns="seed")
        assert len(mine.drop_duplicates()) == 2  # one per scenario
    assert (summary["ci_low"] <= summary["mean_reward"]).all()
    assert (summary["mean_reward"] <= summary["ci_high"]).all()

    faulty = summary[summary["scenario"] == "faulty-release"].set_index("strategy")
    # Latest serves each broken release until the next one; the guarded bandit starves it.
    assert faulty.loc["latest", "faulty_traffic_share"] > 0.15
    assert faulty.loc[RECOMMENDED, "faulty_traffic_share"] < 0.05
    assert faulty.loc[RECOMMENDED, "mean_reward"] > faulty.loc["latest", "mean_reward"] + 0.02
    assert faulty.loc["latest", "rollback_delay"] == 1000  # 2 chunks of 500, every time
    assert summary[summary["scenario"] == "natural"]["faulty_traffic_share"].isna().all()
    # Cost: one model call per request under bandit feedback; shadow scoring asks every live
    # version (up to 4), and learns enough from it to beat serving the newest release.
    by_feedback = summary.groupby("feedback")["calls_per_request"]
    assert (by_feedback.min()["bandit"], by_feedback.max()["bandit"]) == (1.0, 1.0)
    assert set(summary[summary["feedback"] == "shadow"]["strategy"]) == {"leader[shadow]"}
    assert 2.5 < by_feedback.min()["shadow"] <= by_feedback.max()["shadow"] <= 4.0
    assert faulty.loc["leader[shadow]", "faulty_traffic_share"] < 0.05
    assert faulty.loc["leader[shadow]", "mean_reward"] > faulty.loc["latest", "mean_reward"]
    assert "Shadow scoring against bandit feedback" in result.output
    assert "leader[shadow]" in result.output  # a name, not rich markup
    # One version per chunk can't beat the best version of each chunk in hindsight.
    static = summary[summary["strategy"].isin(["latest", "validation-champion"])]
    assert (static["regret"] > -1e-9).all()

    for name in ("cumulative_reward.png", "traffic.png", "regret.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, name
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3
    assert "<h2>Protocol</h2>" in report and "adult / faulty-release" in report
    assert "<h2>Shadow scoring against bandit feedback</h2>" in report
    assert "<dt>calls per request</dt>" in report and "when shadow scoring is invalid" in report
    assert report.count('<tr class="shadow">') == 2  # leader[shadow] in each scenario table
    assert "http" not in report  # self-contained: nothing to fetch


def test_chunk_granularity_on_a_csv_with_bad_rows(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame({"t": np.arange(n), "x": rng.normal(size=n),
                          "kind": rng.choice(["a", "b", "c"], n)})
    frame["label"] = np.where(frame["x"] + (frame["kind"] == "a") > 0.3, "hit", "miss")
    frame = frame.astype(object)
    frame.loc[10, "label"] = None
    frame.loc[20, "x"] = "broken"
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    result = run("--csv", str(path), "--target", "label", "--positive", "hit", "--order-by",
                 "t", "--granularity", "chunk", "--seeds", "2", "--scenario", "natural",
                 "--scenario", "concept-drift", "--workers", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "2,998 of 3,000 rows used; 2 skipped" in result.output
    assert ("warning: table has 2,998 rows: in chunks of 150 that is 20 chunks, 10 release(s)"
            in " ".join(result.output.split()))
    summary = pd.read_csv(out / "summary.csv")
    # The default strategies are the context-free ones (the contextual ones run only with
    # --contextual, and at request granularity: a chunk run leaves them out, with a warning).
    assert set(summary["dataset"]) == {"table"} and len(summary) == 2 * len(CONTEXT_FREE)
    chunked = run("--csv", str(path), "--target", "label", "--positive", "hit", "--order-by",
                  "t", "--granularity", "chunk", "--contextual", "--seeds", "1", "--scenario",
                  "natural", "--workers", "1", "--out", str(out / "c"))
    assert chunked.exit_code == 0, chunked.output
    assert "contextual strategies left out at chunk granularity" in " ".join(
        chunked.output.split())
    assert summary["mean_reward"].between(0.5, 1.0).all()
    shadow = summary[summary["feedback"] == "shadow"]
    shadowed = [s for s in STRATEGIES.values() if s.feedback == "shadow" and not s.contextual]
    assert len(shadow) == 2 * len(shadowed) == 2 * 5
    assert (shadow["calls_per_request"] > 1.0).all()
    assert (summary[summary["feedback"] == "bandit"]["calls_per_request"] == 1.0).all()


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "mnist"], "unknown dataset(s) ['mnist']"),
    (["--scenario", "earthquake"], "unknown scenarios ['earthquake']"),
    (["--strategy", "magic"], "unknown strategies ['magic']"),
    (["--granularity", "hourly"], "granularity must be one of request, chunk"),
    (["--target", "y"], "--target, --positive, --order-by and --sep go with --csv PATH"),
    (["--csv", "nowhere.csv"], "--csv needs --target COLUMN"),
    (["--csv", "nowhere.csv", "--target", "y"], "--csv nowhere.csv: no such file"),
    (["--csv", "/dev/null", "--target", "y"], "--csv /dev/null: not a file (a folder, a"),
    (["--miss-cost", "0.5"], "miss_cost must be > 1"),
    (["--reward", "profit"], "--reward must be one of accuracy, cost, got 'profit'"),
    (["--reward", "accuracy", "--miss-cost", "5"], "--cost and --miss-cost go with --reward"),
    (["--cost", "tp=0,fp=1,fn=oops"], "--cost fn: 'oops' is not a number"),
    (["--cost", "fp=1,fn=20,xx=3"], "--cost takes tp=,fp=,fn=,tn="),
    (["--cost", "tp=5,fp=1,fn=0,tn=0"], "a wrong call must cost more than the right one"),
    (["--cost", "tp=-1e308,fp=1e308,fn=1.7e308"], "the costs span more than a float holds"),
    (["--cost", "fp=1,fn=5", "--miss-cost", "5"], "either --cost or --miss-cost"),
    (["--chunk-size", "100", "--delay", "100"], "--delay 100 must be smaller than"),
    (["--dataset", "adult", "--chunk-size", "30000"], "too few for chunks of 30,000"),
])
def test_mistakes_end_in_one_message(data_dir, tmp_path, args, message):
    result = run(*args, "--data-dir", str(data_dir), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "error:" in result.output and message in " ".join(result.output.split())


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("BANDITOPS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("banditops.simulation.datasets.ADULT_URL", "http://127.0.0.1:9/")
    result = run("--dataset", "vehicle-insurance-fraud", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "fraud_oracle.csv was not found" in result.output
    assert str(tmp_path) in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--scenario", "earthquake"], "unknown scenarios ['earthquake']"),
    (["--strategy", "magic"], "unknown strategies ['magic']"),
    (["--granularity", "hourly"], "granularity must be one of request, chunk"),
    (["--reward", "profit"], "--reward must be one of accuracy, cost"),
    (["--cost", "fp=1,fn=x"], "--cost fn: 'x' is not a number"),
    (["--order-by", " , "], "--order-by needs column names"),
])
def test_names_are_checked_before_any_data_is_loaded(tmp_path, monkeypatch, args, message):
    """No data at all here: the typo is what gets reported, not the missing data."""
    if "--order-by" in args:
        args = [*args, "--csv", str(tmp_path / "absent.csv"), "--target", "y"]
        (tmp_path / "absent.csv").write_text("y\n1\n")
    monkeypatch.delenv("BANDITOPS_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("banditops.simulation.datasets.ADULT_URL", "http://127.0.0.1:9/")
    result = run(*args, "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()) and "not found" not in result.output


def _protocol_text(report: Path) -> str:
    """The report's protocol section as plain words."""
    page = report.read_text(encoding="utf-8")
    section = page[page.index("<h2>Protocol</h2>"):page.index("<h2>Glossary</h2>")]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())


def _rare_positives(tmp_path, n: int = 3000):
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["flagged"] = (frame["a"] + 0.5 * rng.normal(size=n) > 1.7).astype(int)
    path = tmp_path / "claims.csv"
    frame.to_csv(path, index=False)
    return path, float(frame["flagged"].mean())


def test_an_imbalanced_table_warns_about_accuracy_and_takes_a_cost_reward(tmp_path):
    path, share = _rare_positives(tmp_path)
    assert share < 0.1
    common = ["--csv", str(path), "--target", "flagged", "--strategy", "ucb1", "--strategy",
              "latest", "--seeds", "1", "--workers", "1", "--chunk-size", "1000",
              "--scenario", "natural", "--scenario", "faulty-release"]
    result = run(*common, "--out", str(tmp_path / "acc"))
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    miss = round((1 - share) / share)
    assert f"so accuracy pays {1 - share:.2f} for always answering that" in text
    assert f"pass --reward cost --miss-cost {miss}" in text
    # One release in 3,000 rows: faulty-release cannot run; the rest of the run goes on.
    assert "skipped claims / faulty-release: faulty-release breaks the 3rd release" in text
    assert set(pd.read_csv(tmp_path / "acc" / "summary.csv")["scenario"]) == {"natural"}
    page = " ".join((tmp_path / "acc" / "report.html").read_text(encoding="utf-8").split())
    warnings = page[page.index("<h2>Warnings</h2>"):page.index("<h2>Protocol</h2>")]
    assert "so accuracy pays" in warnings and "faulty-release skipped" in warnings

    result = run(*common, "--reward", "cost", "--out", str(tmp_path / "cost"))
    text = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"a missed positive costs {miss} false alarms: negatives per positive" in text
    assert "accuracy pays" not in text
    summary = pd.read_csv(tmp_path / "cost" / "summary.csv")
    assert summary["cost_per_1000"].notna().all()
    protocol = _protocol_text(tmp_path / "cost" / "report.html")
    for fact in ("3,000 rows", f"{int(share * 3000):,} positive", "3 chunks of 1,000 rows",
                 "labels come back 7 requests late", "At most four versions are live",
                 f"a missed positive costs {miss} false alarms",
                 f"exceeds {1 / (1 + miss):.3f}", "a reward gap of 0.01",
                 "faulty-release : skipped, faulty-release breaks the 3rd release",
                 "Every one of the 2 strategies", "seeds (1 here)"):
        assert fact in protocol, fact
    for other_run in ("Adult", "age", "twenty", "fraud"):
        assert other_run not in protocol, other_run

    result = run(*common, "--cost", "tp=0,fp=2,fn=30,tn=0", "--out", str(tmp_path / "given"))
    assert result.exit_code == 0, result.output
    assert "cost matrix (costs tp=0, fp=2, fn=30, tn=0)" in " ".join(result.output.split())


def test_a_cost_reward_needs_a_binary_target(tmp_path):
    rng = np.random.default_rng(8)
    frame = pd.DataFrame({"x": rng.normal(size=2000), "kind": rng.choice(list("abc"), 2000)})
    path = tmp_path / "three.csv"
    frame.to_csv(path, index=False)
    result = run("--csv", str(path), "--target", "kind", "--reward", "cost",
                 "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "a cost reward needs a binary target, and this one has 3 classes" in " ".join(
        result.output.split())


def test_a_reward_that_cannot_tell_faulty_releases_apart_is_called_out():
    from types import SimpleNamespace

    from banditops.rewards import accuracy
    from banditops.simulation.command import _faulty_warnings
    from banditops.simulation.stream import StreamSettings, VersionInfo

    def version(name, faulty, reward):
        return VersionInfo(name, "lr", 0, 10, 0.9, faulty, reward)

    settings = StreamSettings(100, 5, accuracy, "accuracy", guardrail_margin=0.05)
    close = SimpleNamespace(settings=settings, versions=[
        version("v1", False, 0.94), version("v2", False, 0.95), version("v3", True, 0.93)])
    clear = SimpleNamespace(settings=settings, versions=[
        version("v1", False, 0.84), version("v2", False, 0.85), version("v3", True, 0.61)])
    result = SimpleNamespace(streams={("t", "faulty-release"): close,
                                      ("u", "faulty-release"): clear})
    (warning,) = _faulty_warnings(result)
    assert warning.startswith("t / faulty-release: faulty releases earn 0.930 on average "
                              "against 0.945 for healthy ones (a gap of 0.015")


def test_a_results_folder_that_cannot_be_written_fails_before_any_data_is_read(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "broken").symlink_to(tmp_path / "gone")
    for out, why in (("file/sub", "Not a directory"), ("broken", "File exists")):
        result = run("--csv", str(tmp_path / "absent.csv"), "--target", "y",
                     "--out", str(tmp_path / out))  # was a traceback after the whole run
        assert result.exit_code == 2
        assert f"cannot write there ({why})" in " ".join(result.output.split())


def test_markup_and_mathtext_in_file_and_folder_names_are_only_names(tmp_path):
    """A "$" pair in a plot title was parsed as mathtext, and "[/]" in the "Wrote" line as
    rich markup: both were tracebacks once the run was over."""
    rng = np.random.default_rng(9)
    frame = pd.DataFrame({"x": rng.normal(size=1000), "kind": rng.choice(list("ab"), 1000)})
    frame["y"] = (frame["x"] + rng.normal(size=1000) > 0).astype(int)
    path = tmp_path / "m$\\frac$ [b].csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "o[/]ut"
    common = ["--csv", str(path), "--target", "y", "--strategy", "ucb1", "--strategy",
              "latest", "--seeds", "1", "--workers", "1", "--scenario", "natural"]
    result = run(*common, "--sep", "\n", "--out", str(out))
    assert result.exit_code == 2 and "--sep cannot be '\\n'" in result.output
    result = run(*common, "--out", str(out))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"Wrote {out / 'summary.csv'}" in text
    assert "m$\\frac$ [b] / natural (1 seed," in text  # the name, not markup
    assert (out / "traffic.png").read_bytes().startswith(PNG)
    assert "m$\\frac$ [b] / natural" in (out / "report.html").read_text(encoding="utf-8")


def test_the_results_never_overwrite_the_table_replayed(tmp_path):
    """A table named runs.csv in the --out folder was replaced by the results, unasked."""
    (tmp_path / "res").mkdir()
    table = tmp_path / "res" / "runs.csv"
    _rare_positives(tmp_path)
    (tmp_path / "claims.csv").rename(table)
    before = table.read_bytes()
    (tmp_path / "link.csv").symlink_to(table)
    for csv in (table, tmp_path / "link.csv"):
        result = run("--csv", str(csv), "--target", "flagged", "--out", str(tmp_path / "res"))
        assert result.exit_code == 2
        assert "the results would overwrite the table" in " ".join(result.output.split())
    assert table.read_bytes() == before


def test_a_table_sorted_by_its_target_is_called_out():
    from banditops.simulation.command import _warn_grouped
    from banditops.simulation.datasets import Dataset

    rng = np.random.default_rng(9)
    labels = rng.integers(0, 3, 6000)
    features = pd.DataFrame({"x": rng.normal(size=6000)})
    shuffled = Dataset("t", features, pd.Series(labels), "", classes=("a", "b", "c"))
    assert _warn_grouped(shuffled) is None
    grouped = Dataset("t", features, pd.Series(np.sort(labels)), "", classes=("a", "b", "c"))
    warning = _warn_grouped(grouped)
    assert warning is not None and "its rows come in 3 runs of one class" in warning
    assert "replay it in time order with --order-by" in warning


def test_version_and_an_example_in_every_help():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"banditops {version('banditops')}"
    for command in ("demo", "experiment", "serve", "evaluate", "evaluate-check"):
        text = " ".join(CliRunner().invoke(app, [command, "--help"]).output.split())
        assert f"banditops {command} " in text.split("Example", 1)[1], command
