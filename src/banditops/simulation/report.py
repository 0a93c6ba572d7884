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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from banditops.policies import policy_params_class
from banditops.simulation.experiment import ExperimentResult
from banditops.simulation.protocol import protocol_html
from banditops.simulation.strategies import RECOMMENDED, STRATEGIES, STUDY

SUMMARY_COLUMNS = ["dataset", "scenario", "strategy", "group", "feedback", "seeds", "mean_reward",
                   "ci_low", "ci_high", "calls_per_request", "regret", "request_regret",
                   "gap_closed", "faulty_traffic_share",
                   "rollback_delay", "accuracy", "precision", "recall", "f1", "cost_per_1000",
                   "oracle_reward", "request_oracle_reward", "rollbacks", "healthy_rollbacks",
                   "switches",
                   "best_study_reward"]
PLOTS = {"cumulative_reward.png": "Running mean reward per strategy, against the per-chunk "
                                  "oracle",
         "traffic.png": "Traffic share per version, with releases and rollbacks",
         "regret.png": "Cumulative regret to the per-chunk oracle (reward units)"}


OUTPUTS = ("summary.csv", "runs.csv", *PLOTS, "report.html")  # the files written to --out


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


def contextual_verdicts(result: ExperimentResult) -> pd.DataFrame:
    """Per (dataset, scenario): the best contextual strategy against the per-chunk oracle and
    the best context-free strategy, and the share of the gap between the oracles each closes
    (every contextual strategy's too)."""
    summary = result.summary
    rows = []
    for (dataset, scenario), group in summary.groupby(["dataset", "scenario"], sort=False):
        contextual = group[[STRATEGIES[n].contextual for n in group["strategy"]]]
        free = group[[not STRATEGIES[n].contextual for n in group["strategy"]]]
        if contextual.empty or free.empty:
            continue
        mine = contextual.loc[contextual["mean_reward"].idxmax()]
        best = free.loc[free["mean_reward"].idxmax()]
        row = {"dataset": dataset, "scenario": scenario,
               "chunk oracle": mine["oracle_reward"],
               "request oracle": mine["request_oracle_reward"],
               "best contextual strategy": mine["strategy"], "reward": mine["mean_reward"],
               "regret": mine["regret"], "gap closed": mine["gap_closed"],
               "beats the chunk oracle": bool(mine["regret"] < 0),
               "best context-free strategy": best["strategy"],
               "its reward": best["mean_reward"], "its gap closed": best["gap_closed"],
               "at least the best context-free": bool(mine["mean_reward"]
                                                       >= best["mean_reward"])}
        for _, other in contextual.iterrows():
            row[f"gap: {other['strategy']}"] = other["gap_closed"]
        rows.append(row)
    return pd.DataFrame(rows)


def contextual_features_html(result: ExperimentResult) -> str:
    """Which features the contextual strategies route on, and how they are encoded."""
    names = [n for n in _strategies(result) if STRATEGIES[n].contextual]
    if not names:
        return ""
    encoders = []
    for name in names:
        strategy = STRATEGIES[name]
        params = policy_params_class(strategy.policy)(**strategy.params)
        chosen = (", ".join(params.features) if params.features
                  else "every feature of the table")
        encoders.append(f"<code>{html.escape(name)}</code>: {html.escape(chosen)}, "
                        f"{params.dimension} slots")
    datasets = {}
    for info in result.streams.values():
        datasets.setdefault(info.dataset, info.features)
    tables = "".join(
        f"<li><b>{html.escape(d)}</b>: numeric "
        f"{html.escape(', '.join(n for n, k in f.items() if k == 'numeric') or 'none')}; "
        f"categorical "
        f"{html.escape(', '.join(n for n, k in f.items() if k == 'categorical') or 'none')}"
        f"</li>" for d, f in datasets.items())
    return (
        "<p>Contextual strategies route on the request's features, encoded by the hashing "
        "trick (<code>banditops.context.ContextEncoder</code>): slot 0 is a bias; a number "
        "x of feature f adds sign(x)&middot;log1p(|x|) at the slot of f; a category v adds 1 "
        "at the slot of \"f=v\" (one-hot without a vocabulary: an unseen category gets a slot "
        "too); a missing value adds 1 at \"f=null\". Slots are CRC-32 of the key modulo the "
        "dimension, the same in every process. Features used: "
        f"{'; '.join(encoders)}.</p><ul>{tables}</ul>")


def _samples(strategy: str) -> bool:
    """Whether a strategy shadow-scores only a sample of requests."""
    shadow = STRATEGIES[strategy].shadow
    return shadow is not None and shadow.mode == "rate"


# ---------------------------------------------------------------------- plots
# Strategy plots: the recommended strategy and, per panel, the best of the study's six there
# (by mean reward, as in the verdict) stand out; the rest are muted and told apart by group.
RECOMMENDED_COLOR = "#0b4fb3"  # strong blue
BEST_STUDY_COLOR = "#e8590c"  # strong orange: blue and orange stay apart for colour-blind eyes
MUTED_COLOR = "#a0a0a0"
MUTED_SHADOW_COLOR = "#b39ddb"  # light purple: shadow scoring learns from more than it serves
MUTED_CONTEXT_COLOR = "#80cbc4"  # light teal: contextual routing
GROUP_STYLES: dict[str, tuple[str, object]] = {  # group -> (legend label, line style)
    "study": ("other study strategies", "-"),
    "drift-aware": ("drift-aware bandits", (0, (5, 2))),
    "guarded": ("bandits with the guardrail", "-."),
    "shadow": ("shadow scoring", (0, (1, 1))),
    "contextual": ("contextual routing", (0, (3, 1, 1, 1))),
}

# Traffic plot: versions in tab20's colours without its reds, which mark what went wrong: the
# nine strong ones, then their nine light partners, so a run's first 18 versions all differ
# (v10 is not v1 coming back) and, with at most four live, neighbours never match.
VERSION_COLORS = ([c for i, c in enumerate(colormaps["tab20"].colors) if i % 2 == 0 and i != 6]
                  + [c for i, c in enumerate(colormaps["tab20"].colors) if i % 2 and i != 7])
FAULTY_EDGE = "#b00000"
FAULTY_HATCH = "////"
ROLLBACK_STYLES = {  # faulty?: marker style, label colour, legend label
    True: ({"marker": "x", "color": "#c00000", "markersize": 6, "markeredgewidth": 1.8},
           "#c00000", "rollback of a faulty version"),
    False: ({"marker": "o", "markerfacecolor": "none", "markeredgecolor": "#e07b00",
             "markersize": 6, "markeredgewidth": 1.5},
            "#b35f00", "rollback of a healthy version (false alarm)"),
}
LABEL_SIZE = 6.0  # points, release and rollback labels
LABEL_ROW = 8.0  # points between rows of staggered labels
MARK_GAP = 6.0  # points from a rollback marker (on the top edge) to its first label row
RELEASE_ROWS = 4  # rows of release labels at most; a label that fits none is left out


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
            # A "$" in a file name is not mathtext (m$\frac$.csv would not draw).
            axis.set_title(f"{dataset}\n{scenario}", fontsize=9, pad=12, parse_math=False)
            axis.tick_params(labelsize=7)
            if (dataset, scenario) in result.streams:
                cells.append((axis, result.streams[(dataset, scenario)]))
            else:
                axis.set_visible(False)
    return figure, cells


def _chunk_ends(info) -> np.ndarray:
    return np.array([end for _, end in info.chunk_bounds]) - info.start


def _strategies(result: ExperimentResult) -> list[str]:
    return list(dict.fromkeys(result.summary["strategy"]))


def _legend(figure, handles) -> tuple[float, float, float, float]:
    """One legend under the panels, with room kept for as many rows as it needs."""
    columns = min(4, len(handles)) or 1
    rows = math.ceil(len(handles) / columns)
    figure.legend(handles=handles, loc="lower center", ncol=columns, fontsize=7,
                  frameon=False)
    rect = (0.0, (0.2 + 0.17 * rows) / figure.get_figheight(), 1.0, 1.0)
    figure.tight_layout(rect=rect)
    return rect


def _best_study(result: ExperimentResult, dataset: str, scenario: str
                ) -> tuple[str | None, list[str]]:
    """The best of the study's six in one (dataset, scenario) by mean reward, as the verdict
    picks it, and the study strategies tied with it (same mean to 1e-9)."""
    summary = result.summary
    study = summary[(summary["dataset"] == dataset) & (summary["scenario"] == scenario)
                    & summary["strategy"].isin(STUDY)]
    if study.empty:
        return None, []
    best = study.loc[study["mean_reward"].idxmax()]
    tied = [name for name, reward in zip(study["strategy"], study["mean_reward"], strict=True)
            if name != best["strategy"] and abs(reward - best["mean_reward"]) <= 1e-9]
    return str(best["strategy"]), tied


def _strategy_style(strategy: str, best: str | None, tied: list[str]) -> dict[str, object]:
    """Keyword arguments of ``plot`` for one strategy's line in one panel."""
    if strategy == RECOMMENDED:
        return {"color": RECOMMENDED_COLOR, "lw": 2.4, "ls": "-", "zorder": 4,
                "label": f"{strategy} (recommended)"}
    if strategy == best:
        ties = (f"; tied with {', '.join(tied)}" if 0 < len(tied) <= 2
                else f"; {len(tied)} tied" if tied else "")
        return {"color": BEST_STUDY_COLOR, "lw": 2.0, "ls": "-", "zorder": 3,
                "label": f"{strategy} (best of the study's six{ties})"}
    label, style = _group_style(strategy)
    color = {"shadow": MUTED_SHADOW_COLOR, "contextual": MUTED_CONTEXT_COLOR}.get(
        STRATEGIES[strategy].group, MUTED_COLOR)
    return {"color": color, "lw": 0.9, "ls": style, "alpha": 0.8, "zorder": 2, "label": label}


def _group_style(strategy: str) -> tuple[str, object]:
    """A muted strategy's legend label and line style: its group's."""
    return GROUP_STYLES.get(STRATEGIES[strategy].group, ("other strategies", "-"))


def _plot_per_strategy(result: ExperimentResult, name: str, curve, oracle=None):
    """One line per strategy in every cell: ``curve(x, chunk_rewards, info)``. The figure's
    legend names the recommended strategy and the muted groups; each panel's names its best
    study strategy."""
    figure, cells = _grid(result, PLOTS[name])
    handles: dict[str, object] = {}
    for axis, info in cells:
        x = _chunk_ends(info)
        best, tied = _best_study(result, info.dataset, info.scenario)
        for strategy in _strategies(result):
            chunks = result.reward_chunks.get((info.dataset, info.scenario, strategy))
            if chunks is None:
                continue
            style = _strategy_style(strategy, best, tied)
            (line,) = axis.plot(x, curve(x, chunks, info), **style)
            if strategy == best:
                axis.legend(handles=[line], loc="best", fontsize=6.5, framealpha=0.85)
                handles.setdefault("best", Line2D([], [], color=BEST_STUDY_COLOR, lw=2.0,
                                                  label="best of the study's six (named in "
                                                        "each panel)"))
            else:
                handles.setdefault(str(style["label"]), line)
        if oracle is not None:
            (handles["oracle"],) = axis.plot(x, oracle(x, info), color="black", ls="--",
                                             lw=1.0, zorder=5, label="per-chunk oracle")
        axis.set_xlabel("requests", fontsize=7)
    order = [f"{RECOMMENDED} (recommended)", "best",
             *(label for label, _ in GROUP_STYLES.values()), "other strategies", "oracle"]
    _legend(figure, [handles[key] for key in order if key in handles])
    return figure


def _plot_cumulative(result: ExperimentResult):
    return _plot_per_strategy(
        result, "cumulative_reward.png", lambda x, chunks, info: np.cumsum(chunks) / x,
        oracle=lambda x, info: np.cumsum(info.oracle_chunks) / x)


def _plot_regret(result: ExperimentResult):
    return _plot_per_strategy(
        result, "regret.png", lambda x, chunks, info: np.cumsum(info.oracle_chunks - chunks))


def _plot_traffic(result: ExperimentResult):
    """Stacked share of each chunk per version; releases as dotted lines labelled at the
    bottom, rollbacks as markers on the top edge labelled above it, labels staggered in rows
    so that none overlaps another label or a marker."""
    figure, cells = _grid(result, f"Traffic share per version under {result.plot_strategy} "
                                  "(seed 0), with releases and rollbacks")
    most = max((len(info.versions) for _, info in cells), default=0)
    faulty, kinds = False, set()
    for axis, info in cells:
        counts, rollbacks = result.traffic[(info.dataset, info.scenario)]
        ends = _chunk_ends(info)
        starts = np.concatenate([[0], ends[:-1]])
        shares = counts / np.maximum(counts.sum(axis=0), 1)
        bottom = np.zeros(len(ends))
        for index, version in enumerate(info.versions):
            served = shares[index] > 0
            axis.bar(starts[served], shares[index][served], width=(ends - starts)[served],
                     bottom=bottom[served], align="edge",
                     color=VERSION_COLORS[index % len(VERSION_COLORS)],
                     **({"hatch": FAULTY_HATCH, "edgecolor": FAULTY_EDGE, "linewidth": 0.8}
                        if version.faulty else {"linewidth": 0}))
            bottom += shares[index]
            axis.axvline(version.row - info.start, color="#333333", ls=":", lw=0.7)
            faulty |= version.faulty
        kinds |= {info.versions[index].faulty for index, _ in rollbacks}
        axis.set_xlim(0, ends[-1])
        axis.set_ylim(0, 1)
        axis.set_xlabel("requests", fontsize=7)
        axis.set_ylabel("share of chunk", fontsize=7)
    handles: list[object] = []
    if most <= len(VERSION_COLORS) + 3:  # more would crowd the legend; labels name them
        handles += [Patch(color=VERSION_COLORS[i % len(VERSION_COLORS)], label=f"v{i + 1}")
                    for i in range(most)]
    if faulty:
        handles.append(Patch(facecolor="white", edgecolor=FAULTY_EDGE, hatch=FAULTY_HATCH,
                             label="faulty version"))
    handles.append(Line2D([], [], color="#333333", ls=":", lw=0.7, label="release"))
    for kind in sorted(kinds, reverse=True):
        marker, _, label = ROLLBACK_STYLES[kind]
        handles.append(Line2D([], [], ls="none", label=label, **marker))
    rect = _legend(figure, handles)  # lays the panels out: labels are placed on that layout
    for axis, info in cells:
        _release_labels(figure, axis, info)
        rows = _rollback_marks(figure, axis, info, result.traffic[(info.dataset,
                                                                   info.scenario)][1])
        if rows:
            axis.set_title(axis.get_title(), fontsize=9, pad=MARK_GAP + rows * LABEL_ROW + 3)
    figure.tight_layout(rect=rect)  # room for the rows above the panels
    return figure


def _points_per_unit(figure, axis) -> float:
    """Points per x data unit of a panel as laid out."""
    low, high = axis.get_xlim()
    return axis.get_position().width * figure.get_figwidth() * 72 / (high - low)


def _text_width(text: str) -> float:
    """A generous width of a label in points (DejaVu Sans glyphs average under 0.62 em)."""
    return 0.62 * LABEL_SIZE * len(text) + 2


def _stagger(spans: list[tuple[float, float]], gap: float = 2.0) -> list[int]:
    """Per (left, right) span in points, the lowest row where it overlaps no span put in
    that row before it (spans taken from left to right)."""
    rights: list[float] = []
    rows = [0] * len(spans)
    for i in sorted(range(len(spans)), key=lambda i: spans[i][0]):
        left, right = spans[i]
        free = [row for row, end in enumerate(rights) if left >= end + gap]
        if free:
            rows[i] = free[0]
            rights[free[0]] = right
        else:
            rows[i] = len(rights)
            rights.append(right)
    return rows


def _release_labels(figure, axis, info) -> None:
    """"v3" (or "v3 faulty") beside each release line at the bottom, in up to RELEASE_ROWS
    staggered rows; near the right edge a label goes to the left of its line."""
    scale = _points_per_unit(figure, axis)
    edge = axis.get_xlim()[1] * scale
    labels, spans = [], []
    for number, version in enumerate(info.versions, 1):
        x = version.row - info.start
        text = f"v{number} faulty" if version.faulty else f"v{number}"
        width = _text_width(text) + 1.5
        right = x * scale + width <= edge
        labels.append((x, text, version.faulty, right))
        spans.append((x * scale, x * scale + width) if right else (x * scale - width, x * scale))
    for (x, text, bad, right), row in zip(labels, _stagger(spans), strict=True):
        if row >= RELEASE_ROWS:
            continue
        note = axis.annotate(
            text, xy=(x, 0), xycoords=axis.get_xaxis_transform(),
            xytext=(1.5 if right else -1.5, 2 + row * LABEL_ROW), textcoords="offset points",
            ha="left" if right else "right", va="bottom", fontsize=LABEL_SIZE,
            color=FAULTY_EDGE if bad else "black", annotation_clip=False,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        note.set_in_layout(False)


def _rollback_marks(figure, axis, info, rollbacks: list[tuple[int, int]]) -> int:
    """A marker per rollback on the panel's top edge (red x: a faulty version caught; open
    orange circle: a healthy one, a false alarm) and its version above it, staggered in rows
    with leader lines; marks closer than a marker share one label. Returns the rows used."""
    scale = _points_per_unit(figure, axis)
    marks = sorted((row - info.start, index) for index, row in rollbacks)
    clusters: list[list[tuple[int, int]]] = []
    for x, index in marks:
        marker, _, _ = ROLLBACK_STYLES[info.versions[index].faulty]
        axis.plot([x], [1.0], transform=axis.get_xaxis_transform(), clip_on=False, zorder=6,
                  ls="none", **marker)
        if clusters and (x - clusters[-1][-1][0]) * scale < MARK_GAP:
            clusters[-1].append((x, index))
        else:
            clusters.append([(x, index)])
    labels, spans = [], []
    for cluster in clusters:
        x = float(np.mean([x for x, _ in cluster]))
        text = ", ".join(f"v{index + 1}" for _, index in cluster)
        kinds = {info.versions[index].faulty for _, index in cluster}
        color = ROLLBACK_STYLES[kinds.pop()][1] if len(kinds) == 1 else "black"
        labels.append((x, text, color))
        width = _text_width(text)
        spans.append((x * scale - width / 2, x * scale + width / 2))
    rows = _stagger(spans)
    # Higher rows first: a lower label's white box then hides any leader line behind it.
    for (x, text, color), row in sorted(zip(labels, rows, strict=True), key=lambda i: -i[1]):
        note = axis.annotate(
            text, xy=(x, 1.0), xycoords=axis.get_xaxis_transform(),
            xytext=(0, MARK_GAP + row * LABEL_ROW), textcoords="offset points", ha="center",
            va="bottom", fontsize=LABEL_SIZE, color=color, annotation_clip=False,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none"},
            arrowprops=None if row == 0 else {"arrowstyle": "-", "lw": 0.5, "color": "#666666",
                                              "shrinkA": 0, "shrinkB": 4})
        note.set_in_layout(False)
    return max(rows, default=-1) + 1


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


# Counts, or their means over seeds: "1,716.2" and "4", never "1716.2000" beside "2,101".
COUNTS = {"rollback_delay", "rollbacks", "healthy_rollbacks", "switches", "seeds",
          "released at", "retired at"}


def _count(value: object) -> str:
    """A count or a mean of counts: separators, one decimal unless whole.

    >>> _count(1716.2), _count(4.0), _count(float("nan"))
    ('1,716.2', '4', '-')
    """
    if isinstance(value, float | np.floating) and not math.isnan(value):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return _number(value)


# Column names that read better as other words (the glossary explains each).
HEADERS = {"mean_reward": "reward", "ci_low": "CI low", "ci_high": "CI high",
           "healthy_rollbacks": "false alarms", "faulty_traffic_share": "faulty share",
           "cost_per_1000": "cost per 1,000", "f1": "F1", "calls_per_request": "calls",
           "regret": "regret (chunk oracle)", "request_regret": "regret (request oracle)"}


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
                    and not math.isnan(value) else _count(value) if column in COUNTS
                    else _number(value))
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
<dt>oracle, regret</dt><dd>The (per-chunk) oracle serves each chunk with the live version that
did best on it in hindsight; regret is the share of the oracle's reward a strategy missed
(negative when a strategy does better, which routing each request on its features can).</dd>
<dt>per-request oracle, gap closed</dt><dd>The per-request oracle serves each request with a
live version that got it right (the best of them in hindsight): no router can do better.
<b>Gap closed</b> = (reward &minus; per-chunk oracle) / (per-request oracle &minus; per-chunk
oracle): 0 at the per-chunk oracle, 1 at the per-request one, negative below the per-chunk
oracle. The per-request oracle knows every label, so much of the gap is rows only hindsight
tells apart: a few percent closed is already a real gain; compare strategies with each
other, not with 100%.</dd>
<dt>contextual routing</dt><dd>Strategies whose policy looks at the request's features to
choose a version (<code>linear-thompson</code>: linear Thompson sampling;
<code>linucb</code>: LinUCB; one ridge model of the reward per version), with bandit feedback
or <code>[shadow]</code>. Request granularity only. Which features, and how they are
encoded: in the contextual section.</dd>
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
column, shaded in the tables and drawn as light-purple dotted lines in the plots.</dd>
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
    streams, seeds = len(result.streams), result.runs["seed"].nunique()
    sections = [f"<h1>banditops replay: {streams} stream{'s' * (streams != 1)}, "
                f"{seeds} seed{'s' * (seeds != 1)}, {result.granularity} granularity</h1>",
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
    contextual = contextual_verdicts(result)
    if not contextual.empty:
        sections += ["<h2>Contextual routing: between the two oracles</h2>",
                     contextual_features_html(result),
                     "<p>Per row, the best contextual strategy against the per-chunk oracle and "
                     "the best context-free strategy, and each contextual strategy's share of "
                     "the gap between the per-chunk and the per-request oracle.</p>",
                     _table(contextual, percent=(
                         "regret", "gap closed", "its gap closed",
                         *(c for c in contextual.columns if str(c).startswith("gap: "))))]
    columns = ["strategy", "group", "feedback", "mean_reward", "ci_low", "ci_high",
               "calls_per_request", "regret", "request_regret", "gap_closed",
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
            f"{html.escape(info.reward_name)}; per-chunk oracle reward "
            f"{group['oracle_reward'].iloc[0]:.4f}, per-request oracle "
            f"{group['request_oracle_reward'].iloc[0]:.4f}.</p>",
            _table(group[columns].sort_values("mean_reward", ascending=False),
                   percent=("regret", "request_regret", "gap_closed",
                            "faulty_traffic_share")),
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

