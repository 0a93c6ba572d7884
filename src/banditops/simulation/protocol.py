"""The report's protocol text, written from the run's own settings and data.

Every number in it (rows, chunk size, label delay, training window, versions live, reward
and its miss cost, the scenarios' driver, segment and drift row, the faulty releases) is read
from the :class:`~banditops.simulation.experiment.ExperimentResult`, so the text describes
the run that produced the tables under it, whatever the options and the table.
"""

from __future__ import annotations

import html

from banditops.rewards import decision_threshold
from banditops.simulation.experiment import DatasetInfo, ExperimentResult, StreamInfo
from banditops.simulation.models import FAMILIES
from banditops.simulation.scenarios import SCENARIOS
from banditops.simulation.tables import describe_kinds

FAMILY_NAMES = {"logistic-regression": "logistic regression",
                "gradient-boosting": "gradient boosting", "random-forest": "random forest",
                "naive-bayes": "naive Bayes"}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _words(n: int) -> str:
    return NUMBER_WORDS.get(n, f"{n:,}")


def _e(text: object) -> str:
    return html.escape(str(text))


def protocol_html(result: ExperimentResult) -> str:
    """One paragraph per dataset (its data, pipeline, reward and scenarios), then what is
    common to all of them (strategies, granularity, metrics)."""
    parts = [_dataset_html(info, result) for info in result.datasets.values()]
    seeds = int(result.runs["seed"].nunique()) if not result.runs.empty else 0
    strategies = list(dict.fromkeys(result.summary["strategy"]))
    granularity = (
        "at <b>request</b> granularity the policy routes every request and learns from each "
        "delayed label" if result.granularity == "request" else
        "at <b>chunk</b> granularity (the study's protocol) the policy makes one decision per "
        "chunk and learns the chunk's mean reward")
    parts.append(
        f"<p>Every one of the {len(strategies)} strategies runs through the same "
        f"<code>banditops.Deployment</code> as the service; {granularity}. Every version "
        "predicts every row once, and all strategies and seeds replay those same "
        f"predictions; seeds ({seeds} here) drive the strategies' randomness. The "
        "<b>oracle</b> serves each chunk with the live version that did best on it in "
        "hindsight; <b>regret</b> is the share of the oracle's reward a strategy missed. The "
        "<b>per-request oracle</b> serves each request with a live version that got it right; "
        "the <b>gap closed</b> is the share of the distance between the two oracles a "
        "strategy covers. "
        "Intervals are Student-t 95% intervals across seeds.</p>")
    return "".join(parts)


def _dataset_html(info: DatasetInfo, result: ExperimentResult) -> str:
    streams = {scenario: stream for (dataset, scenario), stream in result.streams.items()
               if dataset == info.name}
    settings = info.settings
    chunks = -(-info.rows // settings.chunk_size)
    remainder = info.rows - (chunks - 1) * settings.chunk_size
    last = f" (the last {remainder:,})" if remainder != settings.chunk_size else ""
    first = next(iter(streams.values()), None)
    families = (list(dict.fromkeys(v.family for v in first.versions)) if first
                else list(FAMILIES))
    releases = ", ".join(f"{s}: {len(v.versions)}" for s, v in streams.items())
    columns = (f" Its columns were read as {_e(describe_kinds(info.kinds))}."
               if info.kinds else "")
    threshold = decision_threshold(settings.reward)
    flagging = (f" Models predict the positive class when its probability exceeds "
                f"{threshold:.3f}, the threshold at which predicting it pays under that matrix."
                if abs(threshold - 0.5) > 1e-9 else "")
    text = [
        f"<h3>{_e(info.name)}</h3>",
        f"<p>{_e(info.description)}: {info.rows:,} rows, {_e(info.class_text)}.{columns} "
        f"Replayed in {_e(info.order)}, cut into {chunks:,} chunks of "
        f"{settings.chunk_size:,} rows{last}; labels come back {settings.delay:,} requests "
        "late. "
        f"Nothing is deployed during the first chunk. From row {settings.chunk_size:,} on, "
        f"a continuous-training pipeline releases a new model version every "
        f"{_words(settings.release_every)} chunks (releases per scenario: {_e(releases)}), "
        f"trained on the rows whose labels have <em>arrived</em> (at most the latest "
        f"{settings.train_window:,}), less the last fifth, which gives its validation score. "
        "Families "
        f"cycle through {_e(', '.join(FAMILY_NAMES.get(f, f) for f in families))}. At most "
        f"{_words(settings.max_live)} versions are live; a release retires the oldest. "
        f"Reward: {_e(settings.reward_name)}.{flagging} The guardrails treat a reward gap "
        f"of {settings.guardrail_margin:g} as one that matters.</p>",
    ]
    scenario_items = []
    for scenario in SCENARIOS:
        if scenario in streams:
            scenario_items.append(f"<li><b>{scenario}</b>: "
                                  f"{_scenario_text(streams[scenario])}</li>")
        elif (info.name, scenario) in result.skipped:
            scenario_items.append(f"<li><b>{scenario}</b>: skipped, "
                                  f"{_e(result.skipped[(info.name, scenario)])}</li>")
    text.append(f"<ul>{''.join(scenario_items)}</ul>")
    return "".join(text)


def _scenario_text(stream: StreamInfo) -> str:
    description = _e(stream.description)
    if stream.faulty_every is not None:
        faulty = [v.name for v in stream.versions if v.faulty]
        broken = ", ".join(faulty) if faulty else "none in this run"
        return (f"{description}, a serving bug its offline validation cannot see "
                f"(faulty here: {_e(broken)})")
    if stream.segment is not None and stream.drift_at is not None:
        return f"{description}; versions trained before then are wrong on that segment"
    return description
