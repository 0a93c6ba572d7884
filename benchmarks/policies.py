"""Per-decision cost of banditops policies against River's and MABWiser's, in the same run.

Run: ``make bench`` (or ``.venv/bin/python benchmarks/policies.py [--quick]``).
``--propensities-only`` runs only the table of exact Thompson propensities against the
cached Monte Carlo estimate they replaced), ``--trees`` only the learned partitions' table.

Each measurement is select + update with 5 Bernoulli arms (rewards drawn in advance, so all
libraries do the same work), best of several repeats. Machines here are shared and noisy,
so the figures that matter are the ratios, measured side by side. Also reports the
overhead of ``Deployment.predict`` + ``feedback`` per request, net of the model's own time,
and the per-request cost of the contextual policies (choose + update on a request of 14
features, as a mapping the policy encodes and as a vector encoded beforehand, as the replay
passes it), as a ratio to Thompson sampling's choose + update in the same run. The learned
partitions (``tree-leader``, ``tree-thompson``) are timed apart, on requests where each arm
is best for one age band (so their trees split): the decision alone (choose), and the
learning per labelled request (update, plus an observe per other arm with full information),
refits included, against follow-the-leader's (full information) and Thompson sampling's
(bandit feedback) in the same run; and one refit on a full window.

Also, exact Thompson propensities (:mod:`banditops.policies.maxprob`) against the Monte Carlo
estimate they replaced (2,000 joint draws, smoothed, cached and refreshed after the larger of
50 rewards and 5% of all rewards; the discounted variant every 50), kept here only as the
baseline: ``choose`` + ``update`` per decision with 2, 3 and 4 arms, in the replay's pattern
(every decision followed by a reward) and the service's (batches of decisions between their
rewards).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np
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
    GaussianThompsonSampling,
    Latest,
    LinearThompsonSampling,
    LinUCB,
    SlidingWindowUCB,
    ThompsonSampling,
    TreeLeader,
    TreeThompson,
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
# ------------------------------------------- exact propensities against cached Monte Carlo
class _MonteCarloPropensities:
    """The propensities Thompson sampling logged before they were exact (the baseline only):
    ``samples`` joint posterior draws, smoothed as (wins + 0.5) / (draws + 0.5 k), cached
    and refreshed after ``refresh`` rewards (converging posteriors: after the larger of that
    and 5% of all rewards so far) or any change of the arm set. Mixed into each policy, so
    drawing, selecting and updating are the very same code as the exact policy's."""

    samples = 2000
    refresh = 50
    converges = True
    _arms: dict[str, object]
    _updates: int
    seed: int | None

    def _changed(self) -> None:
        cached = getattr(self, "_mc", None)
        seen = getattr(self, "_mc_seen", 0)
        self._mc_seen = self._updates
        if cached is None:
            return
        if self._updates == seen:  # an arm was added or removed
            self._mc = None
            return
        age = self._updates - self._mc_at
        if age >= self.refresh and (not self.converges or age * 20 >= self._mc_at):
            self._mc = None

    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self) -> dict[str, float]:
        if getattr(self, "_mc", None) is None:
            names = list(self._arms)
            rng = np.random.default_rng([self.seed or 0, self._updates])
            winners = self._draw_matrix(self.samples, rng).argmax(axis=0)
            wins = np.bincount(winners, minlength=len(names))
            smoothed = (wins + 0.5) / (self.samples + 0.5 * len(names))
            self._mc = dict(zip(names, smoothed.tolist(), strict=True))
            self._mc_at = self._updates
        return self._mc

    def propensity(self, name: str) -> float:
        return self.probabilities()[name]

    def choose(self) -> tuple[str, float]:
        name = self.select()  # type: ignore[attr-defined]
        return name, self.probabilities()[name]


class _MonteCarloThompson(_MonteCarloPropensities, ThompsonSampling):
    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        alpha = np.fromiter(self._alpha.values(), float, len(self._alpha))
        beta = np.fromiter(self._beta.values(), float, len(self._beta))
        return rng.beta(alpha[:, None], beta[:, None], (len(alpha), size))


class _MonteCarloDiscounted(_MonteCarloPropensities, DiscountedThompsonSampling):
    converges = False

    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        alpha = 1.0 + np.fromiter(self._successes.values(), float, len(self._successes))
        beta = 1.0 + np.fromiter(self._failures.values(), float, len(self._failures))
        return rng.beta(alpha[:, None], beta[:, None], (len(alpha), size))


class _MonteCarloGaussian(_MonteCarloPropensities, GaussianThompsonSampling):
    def _draw_matrix(self, size: int, rng: np.random.Generator) -> np.ndarray:
        counts = np.fromiter(self._counts.values(), float, len(self._counts))
        sums = np.fromiter(self._sums.values(), float, len(self._sums))
        return rng.normal((sums / counts)[:, None], np.sqrt(self.p.sigma2 / counts)[:, None],
                          (len(counts), size))


# Model versions a few points of accuracy apart: all stay in contention for a long time.
VERSION_MEANS = [0.80, 0.82, 0.83, 0.84]


def time_choose_update(make: Callable[[], object], k: int, n: int, batch: int) -> float:
    """Seconds per decision: ``choose`` for ``batch`` requests, then their rewards."""
    rng = random.Random(1)
    outcomes = [[float(rng.random() < m) for m in VERSION_MEANS[:k]] for _ in range(n)]
    policy = make()
    for i in range(k):
        policy.add_arm(str(i))
    choose, update = policy.choose, policy.update
    start = time.perf_counter()
    for first in range(0, n, batch):
        chosen = [choose()[0] for _ in range(batch)]
        for row, arm in enumerate(chosen, first):
            update(arm, outcomes[row][int(arm)])
    return (time.perf_counter() - start) / n


def propensity_table(n: int) -> Table:
    """Exact propensities against the cached Monte Carlo baseline, measured in turns."""
    table = Table(title=f"Thompson choose + update per decision, {n:,} decisions: exact "
                        "propensities vs cached Monte Carlo (best of 3, in turns)",
                  caption="replay: a reward after every decision; service: 100 decisions, "
                          "then their 100 rewards")
    for column in ("policy", "arms", "pattern", "exact µs", "MC µs", "exact / MC"):
        table.add_column(column, justify="left" if column in ("policy", "pattern") else "right")
    pairs = [("thompson", ThompsonSampling, _MonteCarloThompson),
             ("discounted-thompson", DiscountedThompsonSampling, _MonteCarloDiscounted),
             ("gaussian-thompson", GaussianThompsonSampling, _MonteCarloGaussian)]
    for name, exact, baseline in pairs:
        for k in (2, 3, 4):
            for pattern, batch in (("replay", 1), ("service", 100)):
                ours, theirs = [], []
                for _ in range(3):
                    ours.append(time_choose_update(lambda e=exact: e(seed=0), k, n, batch))
                    theirs.append(time_choose_update(lambda b=baseline: b(seed=0), k, n, batch))
                mine, old = min(ours), min(theirs)
                table.add_row(name, str(k), pattern, f"{mine * 1e6:.2f}", f"{old * 1e6:.2f}",
                              f"{mine / old:.2f}x")
    return table


def banded_rewards(contexts: list[dict[str, object]]) -> list[list[float]]:
    """Each arm best (0.8 against 0.5) for one age band of 15 years: a segment rule."""
    rng = random.Random(2)
    return [[float(rng.random() < (0.8 if int(c["age"]) // 15 % ARMS == k else 0.5))  # type: ignore[call-overload]
             for k in range(ARMS)] for c in contexts]


def time_tree(make: Callable[[], object], contexts: list, table: list[list[float]],
              full: bool) -> tuple[float, float, int]:
    """(seconds per choose, seconds per labelled request's learning, refits): each request
    is chosen, then learned at once: the served arm's reward by update and, with ``full``
    information, every other arm's by observe (as shadow scoring gives them)."""
    def run() -> tuple[float, float, int]:
        policy = make()
        for i in range(ARMS):
            policy.add_arm(str(i))
        contextual = policy.contextual
        choose, update, observe = policy.choose, policy.update, policy.observe
        deciding = learning = 0.0
        clock = time.perf_counter
        for i, context in enumerate(contexts):
            start = clock()
            arm, _ = choose(context) if contextual else choose()
            middle = clock()
            rewards = table[i]
            if contextual:
                update(arm, rewards[int(arm)], context)
                if full:
                    for other in range(ARMS):
                        if str(other) != arm:
                            observe(str(other), rewards[other], context)
            else:
                update(arm, rewards[int(arm)])
                if full:
                    for other in range(ARMS):
                        if str(other) != arm:
                            observe(str(other), rewards[other])
            deciding += middle - start
            learning += clock() - middle
        refits = getattr(policy, "refits", 0)
        return deciding / len(contexts), learning / len(contexts), refits
    runs = [run() for _ in range(3)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]


def time_refit(contexts: list, table: list[list[float]]) -> float:
    """One refit of a tree-leader whose window (4,000 requests) is full."""
    policy = TreeLeader(refit_every=10**9)
    for i in range(ARMS):
        policy.add_arm(str(i))
    for context, rewards in zip(contexts[:4000], table, strict=False):
        policy.update("0", rewards[0], context)
        for other in range(1, ARMS):
            policy.observe(str(other), rewards[other], context)
    def once() -> float:
        start = time.perf_counter()
        policy._refit()
        return time.perf_counter() - start
    return best_of(3, once)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions (a smoke run)")
    parser.add_argument("--propensities-only", action="store_true",
                        help="only the exact vs Monte Carlo propensity table")
    parser.add_argument("--trees", action="store_true",
                        help="only the learned partitions' table")
    args = parser.parse_args()
    n = 5_000 if args.quick else 50_000
    n_mab = 200 if args.quick else 1_000
    table = rewards(n)
    console = Console()
    if args.propensities_only:
        console.print(propensity_table(n // 5))
        return

    if args.trees:
        tree_table(n, console)
        return
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
    console.print(propensity_table(n // 5))

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
    tree_table(n, console)


def tree_table(n: int, console: Console) -> None:
    """The learned partitions against their context-free baselines (module docstring)."""
    tree_requests = requests(max(n // 5, 5000))
    tree_vectors = list(ContextEncoder(256).encode_frame(pd.DataFrame(tree_requests)))
    banded = banded_rewards(tree_requests)
    trees = Table(title=f"learned partitions: per request, {ARMS} arms, 14 features encoded in "
                        f"256 slots, {len(tree_vectors):,} requests (best of 3)")
    for column in ("policy", "feedback", "choose µs", "x baseline", "learn µs", "x baseline",
                   "refits"):
        trees.add_column(column, justify="right" if column != "policy" else "left",
                         no_wrap=column in ("policy", "feedback"))
    for name, make, full, baseline_name, baseline in (
            ("tree-leader", lambda: TreeLeader(), True, "follow-the-leader",
             lambda: FollowTheLeader(window=1000)),
            ("tree-thompson", lambda: TreeThompson(seed=0), False, "thompson",
             lambda: ThompsonSampling(seed=0))):
        base_choose, base_learn, _ = time_tree(baseline, tree_vectors, banded, full)
        choose, learn, refits = time_tree(make, tree_vectors, banded, full)
        feedback = "full (shadow)" if full else "bandit"
        trees.add_row(baseline_name, feedback, f"{base_choose * 1e6:.2f}", "1.0x",
                      f"{base_learn * 1e6:.2f}", "1.0x", "")
        trees.add_row(name, feedback, f"{choose * 1e6:.2f}", f"{choose / base_choose:.1f}x",
                      f"{learn * 1e6:.2f}", f"{learn / base_learn:.1f}x", str(refits))
    console.print(trees)
    console.print(f"one tree-leader refit on a full window (4,000 requests): "
                  f"{time_refit(tree_vectors, banded) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
