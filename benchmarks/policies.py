"""Per-decision cost of banditops policies against River's and MABWiser's, in the same run.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/policies.py [--quick]``).

Each measurement is select + update with 5 Bernoulli arms (rewards drawn in advance, so all
libraries do the same work), best of several repeats. Machines here are shared and noisy,
so the figures that matter are the ratios, measured side by side. Also reports the
overhead of ``Deployment.predict`` + ``feedback`` per request, net of the model's own time.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from banditops import Deployment
from banditops.policies import (
    UCB1,
    ABTest,
    DiscountedThompsonSampling,
    EpsilonGreedy,
    FollowTheLeader,
    Latest,
    SlidingWindowUCB,
    ThompsonSampling,
    ValidationChampion,
)

ARMS = 5
MEANS = [0.3, 0.4, 0.5, 0.6, 0.7]


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def rewards(n: int) -> list[list[float]]:
    rng = random.Random(0)
    return [[float(rng.random() < m) for m in MEANS] for _ in range(n)]


def time_banditops(make: Callable[[], object], n: int, table: list[list[float]]) -> float:
    def run() -> float:
        policy = make()
        for i in range(ARMS):
            policy.add_arm(str(i))
        select, update = policy.select, policy.update
        start = time.perf_counter()
        for i in range(n):
            arm = select()
            update(arm, table[i][int(arm)])
        return (time.perf_counter() - start) / n
    return run()


def time_river(make: Callable[[], object], n: int, table: list[list[float]]) -> float:
    policy = make()
    arms = [str(i) for i in range(ARMS)]
    pull, update = policy.pull, policy.update
    start = time.perf_counter()
    for i in range(n):
        arm = pull(arms)
        update(arm, table[i][int(arm)])
    return (time.perf_counter() - start) / n


def time_mabwiser(learning_policy: object, n: int, table: list[list[float]]) -> float:
    from mabwiser.mab import MAB

    arms = list(range(ARMS))
    mab = MAB(arms=arms, learning_policy=learning_policy, seed=0)
    mab.fit(arms, [table[0][a] for a in arms])
    start = time.perf_counter()
    for i in range(n):
        arm = mab.predict()
        mab.partial_fit([arm], [table[i][arm]])
    return (time.perf_counter() - start) / n


class Instant:
    """A model with no cost of its own, so the Deployment's overhead is what is timed."""

    def predict_one(self, x: object) -> int:
        return 1


def deployment_overhead(make: Callable[[], object], n: int) -> tuple[float, float]:
    """(seconds per predict+feedback, seconds per bare model call) for the same requests."""
    model = Instant()

    def routed() -> float:
        deployment = Deployment(make(), reward="accuracy", max_pending=n + 1)
        for i in range(ARMS):
            deployment.register(f"v{i}", model)
        predict, feedback = deployment.predict, deployment.feedback
        start = time.perf_counter()
        for i in range(n):
            feedback(predict(i).id, 1)
        return (time.perf_counter() - start) / n

    def direct() -> float:
        predict_one = model.predict_one
        start = time.perf_counter()
        for i in range(n):
            predict_one(i)
        return (time.perf_counter() - start) / n

    return best_of(3, routed), best_of(3, direct)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions (a smoke run)")
    args = parser.parse_args()
    n = 5_000 if args.quick else 50_000
    n_mab = 200 if args.quick else 1_000
    table = rewards(n)
    console = Console()

    try:
        from mabwiser.mab import LearningPolicy
        from river import bandit, proba
    except ImportError:  # the bench extra is missing
        console.print("[red]River and MABWiser are needed: pip install -e '.[bench]'[/red]")
        raise SystemExit(2) from None

    comparisons: list[tuple[str, Callable[[], object], Callable[[], object] | None, object]] = [
        ("epsilon-greedy", lambda: EpsilonGreedy(0.1, seed=0),
         lambda: bandit.EpsilonGreedy(epsilon=0.1, seed=0),
         LearningPolicy.EpsilonGreedy(epsilon=0.1)),
        ("ucb1", lambda: UCB1(seed=0), lambda: bandit.UCB(delta=2 ** 0.5, seed=0),
         LearningPolicy.UCB1(alpha=1.0)),
        ("thompson", lambda: ThompsonSampling(seed=0),
         lambda: bandit.ThompsonSampling(reward_obj=proba.Beta(), seed=0),
         LearningPolicy.ThompsonSampling()),
        ("latest", lambda: Latest(), None, None),
        ("validation-champion", lambda: ValidationChampion(), None, None),
        ("ab-test", lambda: ABTest(min_samples=1000, seed=0), None, None),
        ("sliding-window-ucb", lambda: SlidingWindowUCB(seed=0), None, None),
        ("discounted-thompson", lambda: DiscountedThompsonSampling(seed=0), None, None),
        ("follow-the-leader", lambda: FollowTheLeader(seed=0), None, None),
    ]
    result = Table(title=f"select + update per decision, {ARMS} arms (best of 3)")
    for column in ("policy", "banditops µs", "River µs", "x River", "MABWiser µs", "x MABWiser"):
        result.add_column(column, justify="right" if column != "policy" else "left")
    for name, ours, river, mab in comparisons:
        mine = best_of(3, lambda ours=ours: time_banditops(ours, n, table))
        row = [name, f"{mine * 1e6:.2f}", "", "", "", ""]
        if river is not None:
            theirs = best_of(3, lambda river=river: time_river(river, n, table))
            row[2], row[3] = f"{theirs * 1e6:.2f}", f"{theirs / mine:.1f}x"
        if mab is not None:
            slow = best_of(2, lambda mab=mab: time_mabwiser(mab, n_mab, table))
            row[4], row[5] = f"{slow * 1e6:.1f}", f"{slow / mine:.0f}x"
        result.add_row(*row)
    console.print(result)

    overhead = Table(title="Deployment.predict + feedback per request, 5 versions")
    for column in ("policy", "routed µs", "model alone µs", "overhead µs"):
        overhead.add_column(column, justify="right" if column != "policy" else "left")
    for name, ours, _, _ in comparisons[:3] + comparisons[6:]:
        routed, direct = deployment_overhead(ours, n)
        overhead.add_row(name, f"{routed * 1e6:.2f}", f"{direct * 1e6:.2f}",
                         f"{(routed - direct) * 1e6:.2f}")
    console.print(overhead)


if __name__ == "__main__":
    main()
