"""What an experiment leaves behind: CSV files, three plots and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure  # object API: no pyplot state, no display needed

from banditops.simulation.experiment import ExperimentResult
from banditops.simulation.protocol import protocol_html
from banditops.simulation.strategies import RECOMMENDED, STRATEGIES, STUDY

SUMMARY_COLUMNS = ["dataset", "scenario", "strategy", "group", "feedback", "seeds", "mean_reward",
                   "ci_low", "ci_high", "calls_per_request", "regret", "faulty_traffic_share",
                   "rollback_delay", "accuracy", "precision", "recall", "f1", "cost_per_1000",
                   "oracle_reward", "rollbacks", "healthy_rollbacks", "switches",
                   "best_study_reward"]
PLOTS = {"cumulative_reward.png": "Running mean reward per strategy (dashed: per-chunk oracle; "
                                  "dotted with dots: shadow scoring)",
         "traffic.png": "Traffic share per version",
         "regret.png": "Cumulative regret to the per-chunk oracle (reward units; dotted with "
                       "dots: shadow scoring)"}


def write_outputs(result: ExperimentResult, out: Path) -> list[Path]:
    """summary.csv, runs.csv, the plots and report.html in ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "summary.csv", out / "runs.csv"]
    result.summary[SUMMARY_COLUMNS].to_csv(paths[0], index=False, float_format="%.6g")
    result.runs.to_csv(paths[1], index=False, float_format="%.6g")
    for name, draw in (("cumulative_reward.png", _plot_cumulative),
                       ("traffic.png", _plot_traffic), ("regret.png", _plot_regret)):
        figure = draw(result)
        figure.savefig(out / name, dpi=90)
        paths.append(out / name)
    report = out / "report.html"
    report.write_text(render_html(result, out), encoding="utf-8")
    paths.append(report)
    return paths


# ------------------------------------------------------------------ verdicts
def verdicts(result: ExperimentResult, strategy: str = RECOMMENDED) -> pd.DataFrame:
    """Per (dataset, scenario): the strategy against the best study strategy and the goals."""
    summary = result.summary
    rows = []
    for (dataset, scenario), group in summary.groupby(["dataset", "scenario"], sort=False):
        mine = group[group["strategy"] == strategy]
        study = group[group["strategy"].isin(STUDY)]
        if mine.empty or study.empty:
            continue
        mine = mine.iloc[0]
        best = study.loc[study["mean_reward"].idxmax()]
        rows.append({"dataset": dataset, "scenario": scenario, "strategy": strategy,
                     "reward": mine["mean_reward"], "best study strategy": best["strategy"],
                     "its reward": best["mean_reward"],
                     "difference": mine["mean_reward"] - best["mean_reward"],
                     "beats or matches": bool(mine["mean_reward"] >= best["mean_reward"]),
                     "significantly worse": bool(mine["ci_high"] < best["mean_reward"]),
                     "regret": mine["regret"], "regret <= 2%": bool(mine["regret"] <= 0.02),
                     "faulty share": mine["faulty_traffic_share"]})
    return pd.DataFrame(rows)


def shadow_verdicts(result: ExperimentResult) -> pd.DataFrame:
    """Per (dataset, scenario): the best shadow strategy against the best bandit-feedback one,
    and the best strategy that shadow-scores only a sample of requests (mode "rate")."""
    summary = result.summary
    rows = []
    for (dataset, scenario), group in summary.groupby(["dataset", "scenario"], sort=False):
        shadow = group[group["feedback"] == "shadow"]
        bandit = group[group["feedback"] == "bandit"]
        if shadow.empty or bandit.empty:
            continue
        mine = shadow.loc[shadow["mean_reward"].idxmax()]
        best = bandit.loc[bandit["mean_reward"].idxmax()]
        row = {"dataset": dataset, "scenario": scenario,
               "best shadow strategy": mine["strategy"], "reward": mine["mean_reward"],
               "calls/request": mine["calls_per_request"],
               "best bandit-feedback strategy": best["strategy"],
               "its reward": best["mean_reward"], "its 95% CI high": best["ci_high"],
               "difference": mine["mean_reward"] - best["mean_reward"],
               "beats or matches": bool(mine["mean_reward"] >= best["mean_reward"]),
               "above its interval": bool(mine["mean_reward"] > best["ci_high"]),
               "regret": mine["regret"], "regret <= 0.5%": bool(mine["regret"] <= 0.005),
               "faulty share": mine["faulty_traffic_share"],
               "its faulty share": best["faulty_traffic_share"]}
        sampled = shadow[[_samples(name) for name in shadow["strategy"]]]
        if not sampled.empty:
            part = sampled.loc[sampled["mean_reward"].idxmax()]
            row.update({"best sampled-shadow strategy": part["strategy"],
                        "its regret": part["regret"],
                        "its calls/request": part["calls_per_request"]})
        rows.append(row)
    return pd.DataFrame(rows)


def _samples(strategy: str) -> bool:
    """Whether a strategy shadow-scores only a sample of requests."""
    shadow = STRATEGIES[strategy].shadow
    return shadow is not None and shadow.mode == "rate"


# ---------------------------------------------------------------------- plots
def _grid(result: ExperimentResult, title: str):
    datasets = list(dict.fromkeys(k[0] for k in result.streams))
    scenarios = list(dict.fromkeys(k[1] for k in result.streams))
    figure = Figure(figsize=(4.2 * len(scenarios), 3.3 * len(datasets) + 0.8))
    axes = figure.subplots(len(datasets), len(scenarios), squeeze=False)
    figure.suptitle(title)
    cells = []
    for i, dataset in enumerate(datasets):
        for j, scenario in enumerate(scenarios):
            axis = axes[i][j]
            axis.set_title(f"{dataset}\n{scenario}", fontsize=9, pad=12)
            axis.tick_params(labelsize=7)
            if (dataset, scenario) in result.streams:
                cells.append((axis, result.streams[(dataset, scenario)]))
            else:
                axis.set_visible(False)
    return figure, cells


# Shadow strategies get strong colours of their own (purples, teals), apart from tab20's.
SHADOW_COLORS = ["#6a00a8", "#b05fd6", "#00796b", "#4db6ac", "#c2185b", "#f06292"]


def _strategy_colors(strategies: list[str]) -> dict[str, tuple | str]:
    palette = colormaps["tab20"]
    bandit = [s for s in strategies if STRATEGIES[s].feedback != "shadow"]
    shadow = [s for s in strategies if STRATEGIES[s].feedback == "shadow"]
    colors: dict[str, tuple | str] = {name: palette(i % 20) for i, name in enumerate(bandit)}
    colors.update({name: SHADOW_COLORS[i % len(SHADOW_COLORS)]
                   for i, name in enumerate(shadow)})
    return colors


def _chunk_ends(info) -> np.ndarray:
    return np.array([end for _, end in info.chunk_bounds]) - info.start


def _strategies(result: ExperimentResult) -> list[str]:
    return list(dict.fromkeys(result.summary["strategy"]))


def _legend(figure, lines) -> None:
    figure.legend(handles=lines, loc="lower center", ncol=min(7, len(lines)), fontsize=7,
                  frameon=False)
    figure.tight_layout(rect=(0, 0.08, 1, 1))


def _plot_per_strategy(result: ExperimentResult, name: str, curve, oracle=None):
    """One line per strategy in every cell: ``curve(x, chunk_rewards, info)``."""
    figure, cells = _grid(result, PLOTS[name])
    colors, handles = _strategy_colors(_strategies(result)), {}
    for axis, info in cells:
        x = _chunk_ends(info)
        for strategy in _strategies(result):
            chunks = result.reward_chunks.get((info.dataset, info.scenario, strategy))
            if chunks is not None:
                style, width = _line_style(strategy)
                shadow = STRATEGIES[strategy].feedback == "shadow"
                (line,) = axis.plot(x, curve(x, chunks, info), linestyle=style,
                                    color=colors[strategy], lw=width, label=strategy,
                                    marker="o" if shadow else None, markersize=2.5)
                handles[strategy] = line
        if oracle is not None:
            (handles["oracle"],) = axis.plot(x, oracle(x, info), "k--", lw=1.0, label="oracle")
        axis.set_xlabel("requests", fontsize=7)
    _legend(figure, list(handles.values()))
    return figure


def _line_style(strategy: str) -> tuple[object, float]:
    """Dotted with dots for shadow scoring (it learns from more than the served traffic),
    dash-dot for guarded bandits, solid otherwise; the recommended strategy drawn thicker."""
    spec = STRATEGIES[strategy]
    if spec.feedback == "shadow":
        return (0, (1, 1)), 1.4
    return ("-." if spec.guarded else "-"), 1.6 if strategy == RECOMMENDED else 1.0


def _plot_cumulative(result: ExperimentResult):
    return _plot_per_strategy(
        result, "cumulative_reward.png", lambda x, chunks, info: np.cumsum(chunks) / x,
        oracle=lambda x, info: np.cumsum(info.oracle_chunks) / x)


def _plot_regret(result: ExperimentResult):
    return _plot_per_strategy(
        result, "regret.png", lambda x, chunks, info: np.cumsum(info.oracle_chunks - chunks))


def _plot_traffic(result: ExperimentResult):
    figure, cells = _grid(result, f"{PLOTS['traffic.png']} under {result.plot_strategy} "
                                  "(seed 0); dotted: releases, red: faulty, x: rollbacks")
    for axis, info in cells:
        counts, rollbacks = result.traffic[(info.dataset, info.scenario)]
        x = _chunk_ends(info)
        shares = counts / np.maximum(counts.sum(axis=0), 1)
        reds, blues = colormaps["Reds"], colormaps["Blues"]
        colors = [reds(0.5 + 0.4 * (i % 2)) if v.faulty else blues(0.3 + 0.6 * (i % 5) / 4)
                  for i, v in enumerate(info.versions)]
        axis.stackplot(x, shares, colors=colors, step="pre")
        for number, version in enumerate(info.versions, 1):
            axis.axvline(version.row - info.start, color="grey", ls=":", lw=0.6)
            axis.text(version.row - info.start, 0.02, f" v{number}", fontsize=6, rotation=90,
                      color="black", va="bottom")
        for index, row in rollbacks:
            axis.plot(row - info.start, 1.02, marker="x", color="red", ms=6, clip_on=False)
            axis.annotate(f"v{index + 1}", (row - info.start, 1.02), fontsize=6,
                          xytext=(2, 2), textcoords="offset points", annotation_clip=False)
        axis.set_ylim(0, 1)
        axis.set_xlabel("requests", fontsize=7)
        axis.set_ylabel("share of chunk", fontsize=7)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------- html
def _number(value: object, digits: int = 4) -> str:
    """Counts as integers with separators (2,128,000, not 2128000.0000); other numbers with
    ``digits`` decimals (a reward of exactly 1 stays 1.0000: it is a reward, not a count)."""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "-"
        if float(value).is_integer() and (value == 0 or abs(value) > 1):
            return f"{int(value):,}"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


# Column names that read better as other words (the glossary explains each).
HEADERS = {"mean_reward": "reward", "ci_low": "CI low", "ci_high": "CI high",
           "healthy_rollbacks": "false alarms", "faulty_traffic_share": "faulty share",
           "cost_per_1000": "cost per 1,000", "f1": "F1", "calls_per_request": "calls"}


def _table(frame: pd.DataFrame, percent: tuple[str, ...] = ()) -> str:
    """An HTML table; headers are words (``mean_reward`` shows as "mean reward")."""
    head = "".join(f"<th>{html.escape(HEADERS.get(str(c), str(c).replace('_', ' ')))}</th>"
                   for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            value = row[column]
            text = (f"{100 * value:.2f}%" if column in percent and isinstance(value, float)
                    and not math.isnan(value) else _number(value))
            cells.append(f"<td>{text}</td>")
        strategy = row.get("strategy")
        style = (' class="mine"' if strategy == RECOMMENDED
                 else ' class="shadow"' if row.get("feedback") == "shadow" else "")
        body.append(f"<tr{style}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


GLOSSARY = """
<dl>
<dt>reward</dt><dd>What a served prediction earned when its label arrived (see each dataset's
reward above), averaged over all requests from the first release on; with &plusmn; its 95%
interval across seeds (<b>CI low</b>, <b>CI high</b>).</dd>
<dt>accuracy, precision, recall, F1</dt><dd>Of the served predictions against the labels:
the share right; of the requests predicted positive, the share that were; of the positives,
the share predicted; their harmonic mean. With several classes, precision, recall and F1 are
averaged over the classes.</dd>
<dt>cost per 1,000</dt><dd>With a cost reward: the cost of 1,000 requests in units of one
false alarm (a miss counts as many false alarms as the matrix says).</dd>
<dt>rollbacks, false alarms</dt><dd>Versions a strategy's guardrail (or a dark launch) took
out of service; <b>false alarms</b> (healthy rollbacks) are those of versions that were not
faulty. Not always a mistake: a healthy version can be worse than another.</dd>
<dt>switches</dt><dd>How often the version serving most of a chunk differs from the one
that served most of the previous chunk: how much the routing moves.</dd>
<dt>group</dt><dd><code>study</code>: the six strategies of the study; <code>drift-aware</code>:
bandits that forget old rewards; <code>guarded</code>: bandits with a guardrail;
<code>recommended</code>: our default; <code>shadow</code>: strategies that learn from shadow
scoring.</dd>
<dt>best study reward, best of the six</dt><dd>The highest mean reward among the study's six
strategies (latest, validation champion, A/B test, epsilon-greedy, UCB1, Thompson
sampling) on that dataset and scenario. <b>Significant</b>: that mean lies outside our
strategy's 95% interval.</dd>
<dt>oracle, regret</dt><dd>The oracle serves each chunk with the live version that did best on
it in hindsight; regret is the share of the oracle's reward a strategy missed.</dd>
<dt>faulty share, rollback delay</dt><dd>Share of all requests served by faulty releases;
requests each faulty release served after its release.</dd>
<dt>bandit feedback</dt><dd>A strategy learns only from the reward of the version that served
the request: to learn about another version it has to send it traffic (explore).</dd>
<dt>shadow scoring</dt><dd>The deployment also asks other live versions for their prediction
of the request, without showing it to the client, and scores those predictions too when the
label arrives: side observations for the policy, evidence for the guardrail. Every version
is then judged on all traffic and nothing needs exploring. <code>[shadow]</code> strategies
shadow-score every request with every other live version; <code>[shadow 0.1]</code> a random
tenth of the requests. Shadow strategies are marked <code>shadow</code> in the feedback
column, shaded in the tables and dotted with dots in the plots.</dd>
<dt>when shadow scoring is invalid</dt><dd>When the outcome depends on the served prediction:
the claim flagged is the one investigated (so only flagged claims get a label), the item
recommended is the one clicked. There the label says nothing about what another version's
answer would have earned, and bandit feedback is all there is. It is valid when the truth
comes regardless of the answer, as here: whether a person earned more than 50K, whether a
claim (every claim eventually settled) was fraud.</dd>
<dt>strategies</dt><dd><code>leader</code>: follow-the-leader, serves the live version with
the best mean over its last 1,000 rewards (served or shadow); <code>thompson</code>: Thompson
sampling; <code>+guardrail</code>: the guardrail may roll a version back;
<code>thompson-prior</code>: new versions start from their validation score worth 20
observations.</dd>
<dt>dark launch (<code>+dark</code>)</dt><dd>A new release serves nobody until its shadow
rewards show it is not worse than the best live version by more than 0.01: its reward is
compared with each live version's on the same labelled requests (paired, so drift cancels),
with an anytime-valid confidence sequence. Then it is promoted, with its shadow rewards as
evidence for the policy; if it is worse by more than 0.01 it is rolled back before it served
a single request. Such a release counts among the rollbacks, and among the healthy rollbacks
when it was not faulty: a release worse than what is live, turned away on purpose.</dd>
<dt>calls per request</dt><dd>Model calls per request, averaged over the requests: the served
prediction plus the shadow predictions. 1 under bandit feedback; with every request
shadow-scored, about the number of live versions; at rate 0.1, about
1 + 0.1 &times; (live versions &minus; 1). It is what shadow scoring costs in compute, next
to what it buys in reward.</dd>
<dt>95% interval</dt><dd>Student-t interval of the mean reward across seeds (seeds drive the
strategies' randomness; the versions are the same for every seed). A deterministic strategy
gives the same run for every seed and a zero-width interval.</dd>
</dl>
"""


def _warnings_html(result: ExperimentResult) -> list[str]:
    """What the reader should know before the numbers: a small table, a reward that does
    not tell versions apart, scenarios skipped."""
    items = [html.escape(w) for w in result.warnings]
    items += [f"{html.escape(d)} / {html.escape(s)} skipped: {html.escape(reason)}"
              for (d, s), reason in result.skipped.items()]
    if not items:
        return []
    return ['<h2>Warnings</h2><ul class="warnings">',
            *(f"<li>{item}</li>" for item in items), "</ul>"]


def render_html(result: ExperimentResult, out: Path) -> str:
    """The report: protocol, verdicts, per-scenario tables, versions, plots, timings."""
    sections = [f"<h1>banditops replay: {len(result.streams)} streams, "
                f"{result.runs['seed'].nunique()} seeds, {result.granularity} granularity</h1>",
                *_warnings_html(result), "<h2>Protocol</h2>", protocol_html(result)]
    sections += ["<h2>Glossary</h2>", GLOSSARY]
    verdict = verdicts(result)
    if not verdict.empty:
        sections += [f"<h2>Recommended strategy ({RECOMMENDED}) against the study</h2>",
                     _table(verdict, percent=("regret", "faulty share"))]
    shadow = shadow_verdicts(result)
    if not shadow.empty:
        sections += ["<h2>Shadow scoring against bandit feedback</h2>",
                     "<p>Per row, the best strategy that learns from shadow predictions against "
                     "the best that learns only from served rewards, and what it costs in model "
                     "calls per request.</p>",
                     _table(shadow, percent=("regret", "faulty share", "its faulty share",
                                             "its regret"))]
    columns = ["strategy", "group", "feedback", "mean_reward", "ci_low", "ci_high",
               "calls_per_request", "regret",
               "faulty_traffic_share", "rollback_delay", "accuracy", "precision", "recall",
               "f1", "cost_per_1000", "rollbacks", "healthy_rollbacks", "switches"]
    for (dataset, scenario), group in result.summary.groupby(["dataset", "scenario"],
                                                              sort=False):
        info = result.streams[(dataset, scenario)]
        versions = pd.DataFrame([{
            "version": v.name, "released at": v.row, "retired at": v.end,
            "validation": v.validation_score,
            "production reward": v.production_reward,
            "faulty": v.faulty} for v in info.versions])
        sections += [
            f"<h2>{html.escape(dataset)} / {html.escape(scenario)}</h2>",
            f"<p>{html.escape(info.description)}; {info.n:,} rows, reward: "
            f"{html.escape(info.reward_name)}; oracle reward "
            f"{group['oracle_reward'].iloc[0]:.4f}.</p>",
            _table(group[columns].sort_values("mean_reward", ascending=False),
                   percent=("regret", "faulty_traffic_share")),
            "<details><summary>versions</summary>", _table(versions), "</details>"]
    for name, title in PLOTS.items():
        data = base64.b64encode((out / name).read_bytes()).decode("ascii")
        sections += [f"<h2>{html.escape(title)}</h2>",
                     f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">']
    timing = pd.DataFrame([{"phase": k, "value": v} for k, v in result.seconds.items()])
    sections += ["<h2>Timings (seconds)</h2>", _table(timing)]
    style = ("body{font-family:sans-serif;max-width:1400px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "tr.mine{background:#eef6ff;font-weight:bold}tr.shadow{background:#f5efff}"
             "dt{font-weight:bold;margin-top:0.4em}img{max-width:100%}"
             "ul.warnings li{color:#8a4b00}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>banditops replay</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")

