"""Per-decision cost of banditops policies against River's and MABWiser's, in the same run.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/policies.py [--quick]``).

Each measurement is select + update with 5 Bernoulli arms (rewards drawn in advance, so all
libraries do the same work), best of several repeats. Machines here are shared and noisy,
so the figures that matter are the ratios, measured side by side. Also reports the
overhead of ``Deployment.predict`` + ``feedback`` per request, net of the model's own time,
and the per-request cost of the contextual policies (choose + update on a request of 14
features, as a mapping the policy encodes and as a vector encoded beforehand, as the replay
passes it), as a ratio to Thompson sampling's choose + update in the same run.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import pandas as pd
from rich.console import Console
from rich.table import Table

from banditops import Deployment
from banditops.context import ContextEncoder
from banditops.policies import (
    UCB1,
    ABTest,
    DiscountedThompsonSampling,
    EpsilonGreedy,
    FollowTheLeader,
    Latest,
    LinearThompsonSampling,
    LinUCB,
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


def requests(n: int) -> list[dict[str, object]]:
    """Adult-like requests: 6 numbers and 8 categories (14 features)."""
    rng = random.Random(1)
    jobs = ["clerk", "chef", "sales", "tech", "admin", "farming", "repair", "other"]
    return [{"age": rng.randint(17, 90), "fnlwgt": rng.randint(10_000, 1_500_000),
             "education-num": rng.randint(1, 16), "capital-gain": rng.choice([0, 0, 0, 5178]),
             "capital-loss": 0, "hours-per-week": rng.randint(1, 99),
             **{f"cat{i}": rng.choice(jobs[: 2 + i]) for i in range(8)}} for _ in range(n)]


def time_contextual(make: Callable[[], object], contexts: list, table: list[list[float]]
                    ) -> float:
    """choose(context) + update(name, reward, context) per request (a context-free policy:
    choose() + update())."""
    def run() -> float:
        policy = make()
        for i in range(ARMS):
            policy.add_arm(str(i))
        choose, update = policy.choose, policy.update
        contextual = policy.contextual
        start = time.perf_counter()
        for i, context in enumerate(contexts):
            if contextual:
                arm, _ = choose(context)
                update(arm, table[i][int(arm)], context)
            else:
                arm, _ = choose()
                update(arm, table[i][int(arm)])
        return (time.perf_counter() - start) / len(contexts)
    return best_of(3, run)


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

    n_context = n // 5
    mappings = requests(n_context)
    vectors = list(ContextEncoder(64).encode_frame(pd.DataFrame(mappings)))
    contextual = Table(title=f"contextual policies: choose + update per request, {ARMS} arms, "
                             "14 features, dimension 64 (best of 3)")
    for column in ("policy", "mapping µs", "encoded µs", "x Thompson (mapping)",
                   "x Thompson (encoded)"):
        contextual.add_column(column, justify="right" if column != "policy" else "left")
    baseline = time_contextual(lambda: ThompsonSampling(seed=0), mappings, table)
    contextual.add_row("thompson (context-free)", f"{baseline * 1e6:.2f}", "", "1.0x", "")
    for name, make in (("linear-thompson", lambda: LinearThompsonSampling(seed=0)),
                       ("linucb", lambda: LinUCB()),
                       ("linear-thompson, gamma 0.999",
                        lambda: LinearThompsonSampling(gamma=0.999, seed=0)),
                       ("linucb, gamma 0.999", lambda: LinUCB(gamma=0.999))):
        raw = time_contextual(make, mappings, table)
        encoded = time_contextual(make, vectors, table)
        contextual.add_row(name, f"{raw * 1e6:.2f}", f"{encoded * 1e6:.2f}",
                           f"{raw / baseline:.1f}x", f"{encoded / baseline:.1f}x")
    console.print(contextual)


if __name__ == "__main__":
    main()
