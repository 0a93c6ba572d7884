"""The report's plots on a made-up experiment: what stands out, and labels that never overlap."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Annotation

from banditops.simulation import report
from banditops.simulation.experiment import ExperimentResult, StreamInfo
from banditops.simulation.strategies import RECOMMENDED
from banditops.simulation.stream import VersionInfo

CHUNK, START = 100, 200
STRATEGIES = [RECOMMENDED, "latest", "ucb1", "thompson", "ucb1+guardrail",
              "sliding-window-ucb", "leader[shadow]"]
# (version index, requests served when taken down): rollbacks of faulty (even) and healthy
# (odd) versions whose markers are a few points apart (their labels would overlap), two at the
# very same request, one at the right edge.
ROLLBACKS = [(2, 1000), (1, 1060), (3, 1120), (4, 1300), (5, 1300), (6, 1995)]


def made_up_result(versions: int = 12, chunks: int = 20) -> ExperimentResult:
    """Two panels; versions released every chunk (crowded release labels), rollbacks as
    ROLLBACKS in each, ucb1 the best of the study's six in the first panel, thompson in the
    second."""
    rng = np.random.default_rng(0)
    n = START + CHUNK * chunks
    infos, traffic, chunks_of, rows = {}, {}, {}, []
    for cell, scenario in enumerate(("natural", "faulty-release")):
        released = [START + CHUNK * (i * chunks // versions) for i in range(versions)]
        info = StreamInfo(
            "made-up", scenario, "a made-up stream", "accuracy", n, START,
            [(s, min(s + CHUNK, n)) for s in range(START, n, CHUNK)],
            [VersionInfo(f"v{i + 1}", "logistic", row, n, 0.8, i % 2 == 0, 0.8)
             for i, row in enumerate(released)],
            np.full(chunks, 0.9 * CHUNK))
        infos[(info.dataset, scenario)] = info
        counts = rng.integers(0, 50, size=(versions, chunks))
        traffic[(info.dataset, scenario)] = (counts, [(v, START + r) for v, r in ROLLBACKS])
        for strategy in STRATEGIES:
            reward = {"ucb1": 0.88, "thompson": 0.87 + 0.02 * cell}.get(strategy, 0.8)
            chunks_of[(info.dataset, scenario, strategy)] = np.full(chunks, reward * CHUNK)
            rows.append({"dataset": info.dataset, "scenario": scenario, "strategy": strategy,
                         "mean_reward": reward})
    summary = pd.DataFrame(rows)
    return ExperimentResult(runs=summary, summary=summary, streams=infos,
                            reward_chunks=chunks_of, traffic=traffic,
                            plot_strategy=RECOMMENDED, granularity="request")


def drawn(figure):
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_rollback_and_release_labels_overlap_nothing():
    figure = report._plot_traffic(made_up_result())
    renderer = drawn(figure)
    for axis in figure.axes:
        boxes = [(a.get_text(), a.get_bbox_patch().get_window_extent(renderer))
                 for a in axis.texts if isinstance(a, Annotation)]
        # Every release and every rollback (the two at one request share one) is labelled.
        assert len(boxes) == 12 + len(ROLLBACKS) - 1
        for (one, a), (other, b) in combinations(boxes, 2):
            assert not overlap(a, b), (one, other)
        # Rollback markers: the lines with one point on the top edge.
        marks = [line for line in axis.lines if len(line.get_xdata()) == 1]
        assert len(marks) == len(ROLLBACKS)
        for mark in marks:
            box = mark.get_window_extent(renderer)
            for text, label in boxes:
                assert not overlap(box, label), text
        # Rollbacks at the same row share a label; healthy versions are false alarms.
        assert "v5, v6" in dict(boxes)
        kinds = {(m.get_marker(), m.get_markerfacecolor()) for m in marks}
        assert kinds == {("x", "#c00000"), ("o", "none")}
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "rollback of a healthy version (false alarm)" in legend
    assert "rollback of a faulty version" in legend and "faulty version" in legend
    assert {"v1", "v12"} <= set(legend)  # each version's colour


def test_version_colours_differ_between_neighbours_and_faulty_ones_are_hatched():
    figure = report._plot_traffic(made_up_result())
    axis = figure.axes[0]
    by_version: dict[int, set] = {}
    for container in axis.containers:
        faces = {tuple(np.round(bar.get_facecolor(), 3)) for bar in container}
        hatches = {bar.get_hatch() for bar in container}
        by_version[len(by_version)] = faces
        assert hatches == ({report.FAULTY_HATCH} if len(by_version) % 2 == 1 else {None})
    assert all(len(faces) == 1 for faces in by_version.values())
    colours = [next(iter(by_version[i])) for i in range(len(by_version))]
    assert all(colours[i] != colours[i + 1] for i in range(len(colours) - 1))
    assert len(set(colours[:4])) == 4  # any four live at once differ


@pytest.mark.parametrize("plot", [report._plot_cumulative, report._plot_regret])
def test_the_recommended_and_the_best_study_strategy_stand_out(plot):
    figure = plot(made_up_result())
    for axis, best in zip(figure.axes, ("ucb1", "thompson"), strict=True):
        lines = {line.get_label(): line for line in axis.lines}  # one per muted group
        mine = lines[f"{RECOMMENDED} (recommended)"]
        top = lines[f"{best} (best of the study's six)"]
        muted = [line for line in axis.lines if line.get_label() in {
            "other study strategies", "bandits with the guardrail", "drift-aware bandits",
            "shadow scoring"}]
        assert len(muted) == len(STRATEGIES) - 2
        assert min(mine.get_linewidth(), top.get_linewidth()) > 2 * max(
            line.get_linewidth() for line in muted)
        assert mine.get_color() != top.get_color()
        assert {line.get_color() for line in muted}.isdisjoint({mine.get_color(),
                                                                top.get_color()})
        assert [t.get_text() for t in axis.get_legend().get_texts()] == [top.get_label()]
        assert (lines["shadow scoring"].get_linestyle()
                != lines["other study strategies"].get_linestyle())
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend[0] == f"{RECOMMENDED} (recommended)"
    assert "shadow scoring" in legend and "bandits with the guardrail" in legend
