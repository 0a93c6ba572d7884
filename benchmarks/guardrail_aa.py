"""A/A benchmark of the guardrail under continuous monitoring (issue 9, item 3).

Two identical Bernoulli(0.85) versions each get one reward per round; the guardrail checks
every 10 rewards (5 rounds), confidence 0.99, min_samples 200, Welch's window 1,000 (the
defaults). A run has a *false rollback* if either version is ever rolled back. Detection: the
same setting where version b drops to 0.80 (5 points) after ``drop`` rewards; the delay is the
number of rewards (requests, both versions) from the drop to b's rollback.

The guardrail's rules are vectorised over runs and checks with numpy: at a check only the sums
of the rewards matter (and Welch's 1,000-reward window is 200 whole checks), so each version's
rewards between two checks are drawn as one Binomial(5, p). ``verify()`` replays the same draws
through :class:`banditops.guardrails.Guardrail` and asserts the same first rollback.

    python benchmarks/guardrail_aa.py                          # 2,000 runs x 100,000 rewards
    python benchmarks/guardrail_aa.py --runs 100 --rewards 20000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import stdtr
from statsmodels.stats.proportion import proportion_confint

from banditops.guardrails import _BET_WARMUP as BET_WARMUP
from banditops.guardrails import _BET_WINDOW as BET_WINDOW
from banditops.guardrails import _SEQUENTIAL_TUNING, Guardrail, normal_mixture_radius

P, DROP = 0.85, 0.05
PER_CHECK = 5  # rewards per version between checks (check_every 10, two versions)
CONFIDENCE, MIN_SAMPLES, WINDOW = 0.99, 200, 1000
ALPHA = 1.0 - CONFIDENCE  # two versions: one comparison, no Bonferroni split
METHODS = ("sequential", "welch")


def draw(rng: np.random.Generator, runs: int, checks: int,
         drop_check: int | None) -> np.ndarray:
    """Successes per (run, check, version): shape (runs, checks, 2)."""
    p = np.full((checks, 2), P)
    if drop_check is not None:
        p[drop_check:, 1] = P - DROP
    return rng.binomial(PER_CHECK, p, size=(runs, checks, 2)).astype(np.int32)


def first_rollbacks(successes: np.ndarray, method: str,
                    margins: list[float]) -> dict[float, np.ndarray]:
    """Per margin, per run: [first check that rolls a version back (-1: none), which one]."""
    cumulative = np.cumsum(successes, axis=1, dtype=np.int64)
    checks = successes.shape[1]
    n_all = PER_CHECK * np.arange(1, checks + 1, dtype=np.float64)[None, :, None]
    if method == "sequential":
        n, total = n_all, cumulative.astype(np.float64)
    else:
        blocks = WINDOW // PER_CHECK
        lagged = np.zeros_like(cumulative)
        lagged[:, blocks:] = cumulative[:, :-blocks]
        n, total = np.minimum(n_all, WINDOW), (cumulative - lagged).astype(np.float64)
    mean = total / n
    squares = np.maximum(total - total * total / n, 0.0)  # Bernoulli: sum of squares = sum
    # The best is the higher mean (a on ties, as max() keeps the first); b is judged on ties.
    b_is_best = mean[..., 1] > mean[..., 0]
    gap = np.abs(mean[..., 0] - mean[..., 1])  # best - other
    judged = n[..., 0] >= MIN_SAMPLES
    result = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "sequential":
            var = (squares + 0.25) / n
            information = 1.0 / (var[..., 0] / n[..., 0] + var[..., 1] / n[..., 0])
            radius = _radius(information, ALPHA / 2, _SEQUENTIAL_TUNING * MIN_SAMPLES)
        else:
            var = squares / (n - 1) / n
            se2 = var[..., 0] + var[..., 1]
            df = se2 * se2 / (var[..., 0] ** 2 / (n[..., 0] - 1)
                              + var[..., 1] ** 2 / (n[..., 0] - 1))
        for margin in margins:
            if method == "sequential":
                wealth = _log_wealth(successes, margin)  # (runs, checks, [a over b, b over a])
                best_over_other = np.where(b_is_best, wealth[..., 1], wealth[..., 0])
                rolled = (gap - radius > margin) | (best_over_other >= np.log(4.0 / ALPHA))
            else:
                t = (margin - gap) / np.sqrt(se2)
                p_value = np.where(se2 == 0.0, np.where(margin - gap < 0.0, 0.0, 1.0),
                                   stdtr(df, t))
                rolled = p_value < ALPHA
            rolled &= judged
            any_rolled = rolled.any(axis=1)
            first = np.where(any_rolled, rolled.argmax(axis=1), -1)
            loser = np.where(b_is_best[np.arange(len(first)), np.maximum(first, 0)], 0, 1)
            result[margin] = np.stack([first, np.where(any_rolled, loser, -1)], axis=1)
    return result


def _log_wealth(successes: np.ndarray, margin: float) -> np.ndarray:
    """The guardrail's betting e-processes (``_Bettor``), vectorised over runs: log-wealth
    after each check, for "b trails a" and "a trails b". The first check only starts them;
    each later one adds the increment of its 5 + 5 rewards, betting from the previous ones
    with the same running sums in the same order as the guardrail (so the floats agree)."""
    runs, checks, _ = successes.shape
    means = successes / PER_CHECK
    out = np.zeros((runs, checks, 2))
    cap = 0.5 / (1.0 + margin)
    for direction, (better, worse) in enumerate(((0, 1), (1, 0))):
        x_all = means[..., better] - means[..., worse] - margin
        total, total_sq = np.zeros(runs), np.zeros(runs)
        log_wealth = np.zeros(runs)
        for check in range(1, checks):
            count = min(check - 1, BET_WINDOW)
            x = x_all[:, check]
            if count >= BET_WARMUP:
                mean = total / count
                second = np.maximum(total_sq / count, mean * mean)
                with np.errstate(divide="ignore", invalid="ignore"):
                    bet = np.where(mean > 0.0, np.minimum(mean / second, cap), 0.0)
                log_wealth = log_wealth + np.log1p(bet * x)
            total = total + x
            total_sq = total_sq + x * x
            if check - 1 >= BET_WINDOW:
                old = x_all[:, check - BET_WINDOW]
                total = total - old
                total_sq = total_sq - old * old
            out[:, check, direction] = log_wealth
    return out


def _radius(information: np.ndarray, alpha: float, tuned_for: float) -> np.ndarray:
    """:func:`banditops.guardrails.normal_mixture_radius` over an array (checked equal)."""
    log_term = 2.0 * np.log(1.0 / alpha)
    rho2 = (log_term + np.log(1.0 + log_term)) / tuned_for
    radius = np.sqrt((information + 1.0 / rho2) * (log_term + np.log1p(rho2 * information)))
    return radius / information


def verify(runs: int = 3, checks: int = 400, seed: int = 1) -> None:
    """Replay draws through the real Guardrail; the first rollback must match exactly."""
    information = np.array([400.0, 4000.0, 123_456.0])
    np.testing.assert_allclose(_radius(information, ALPHA, 4000.0), [
        normal_mixture_radius(float(i), ALPHA, 4000.0) for i in information], rtol=1e-12)
    rng = np.random.default_rng(seed)
    rollbacks = dict.fromkeys(METHODS, 0)
    for drop_check in (None, 0):
        successes = draw(rng, runs, checks, drop_check)
        for method in METHODS:
            results = first_rollbacks(successes, method, [0.0, 0.01])
            for margin, expected in results.items():
                for run in range(runs):
                    guardrail = Guardrail(method=method, margin=margin, confidence=CONFIDENCE,
                                          min_samples=MIN_SAMPLES, window=WINDOW, check_every=10)
                    got = [-1, -1]
                    for check in range(checks):
                        verdicts = []
                        for i in range(PER_CHECK):
                            for version, name in enumerate("ab"):
                                reward = float(i < successes[run, check, version])
                                verdicts += guardrail.observe(name, reward, ["a", "b"])
                        if verdicts:
                            got = [check, "ab".index(verdicts[0].version)]
                            break
                    assert got == expected[run].tolist(), (method, margin, run, got, expected[run])
                    rollbacks[method] += got[0] >= 0
    assert all(rollbacks.values()), f"nothing was rolled back, nothing was verified: {rollbacks}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 2,000 runs: at 500 a 1 % rate has a standard error of 0.45 points, too wide to say <= 1 %
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rewards", type=int, default=100_000, help="per run, both versions")
    parser.add_argument("--margins", default="0,0.01,0.05")
    parser.add_argument("--drops", default="0,10000,40000",
                        help="rewards before b drops 5 points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=500, help="runs simulated at once")
    args = parser.parse_args()
    started = time.perf_counter()
    verify()
    checks = args.rewards // (2 * PER_CHECK)
    margins = [float(m) for m in args.margins.split(",")]
    drops = [int(d) for d in args.drops.split(",")]
    rng = np.random.default_rng(args.seed)
    false = {(m, margin): 0 for m in METHODS for margin in margins}
    delays: dict[tuple[str, float, int], list[int]] = {
        (m, margin, d): [] for m in METHODS for margin in margins for d in drops}
    early = {(m, margin, d): 0 for m in METHODS for margin in margins for d in drops}
    for start in range(0, args.runs, args.chunk):
        runs = min(args.chunk, args.runs - start)
        scenarios = [(None, draw(rng, runs, checks, None))]
        scenarios += [(d, draw(rng, runs, checks, d // (2 * PER_CHECK))) for d in drops]
        for drop, successes in scenarios:
            for method in METHODS:
                for margin, first in first_rollbacks(successes, method, margins).items():
                    if drop is None:
                        false[method, margin] += int((first[:, 0] >= 0).sum())
                        continue
                    for check, loser in first.tolist():
                        at = (check + 1) * 2 * PER_CHECK  # rewards seen at that check
                        if check >= 0 and (loser == 0 or at <= drop):
                            early[method, margin, drop] += 1  # a false rollback, not a detection
                        elif check >= 0:
                            delays[method, margin, drop].append(at - drop)
    elapsed = time.perf_counter() - started
    print(f"A/A: two Bernoulli({P}) versions, {args.runs} runs x {args.rewards:,} rewards, "
          f"check every 10, confidence {CONFIDENCE}, min_samples {MIN_SAMPLES}, "
          f"Welch window {WINDOW}, sequential since release ({elapsed:.0f} s)\n")
    print(f"{'margin':>7} {'false rollbacks: sequential':>28} {'(95% CI)':>15} {'welch':>8} "
          f"{'seq/welch':>10}")
    for margin in margins:
        seq, wel = (false[m, margin] / args.runs for m in METHODS)
        low, high = proportion_confint(false["sequential", margin], args.runs, method="wilson")
        ratio = f"{seq / wel:.2f}" if wel else "-"
        print(f"{margin:>7g} {seq:>28.2%} {f'{low:.2%}-{high:.2%}':>15} {wel:>8.1%} {ratio:>10}")
    print(f"\nDetection of a {DROP:g} drop of b (rewards from the drop to b's rollback; same runs "
          "for both methods; 'found' = runs detected before the end, 'false' = a rolled back "
          "or b before the drop)")
    print(f"{'drop at':>8} {'margin':>7} {'method':>11} {'found':>7} {'false':>6} "
          f"{'median':>8} {'p90':>8} {'median seq/welch':>17}")
    for drop in drops:
        for margin in margins:
            medians = {}
            for method in METHODS:
                values = np.array(delays[method, margin, drop])
                found = len(values) / args.runs
                median = float(np.median(values)) if len(values) else float("nan")
                p90 = float(np.percentile(values, 90)) if len(values) else float("nan")
                medians[method] = median
                ratio = ""
                if method == "welch" and medians["welch"] > 0:
                    ratio = f"{medians['sequential'] / medians['welch']:.2f}"
                print(f"{drop:>8,} {margin:>7g} {method:>11} {found:>7.0%} "
                      f"{early[method, margin, drop] / args.runs:>6.0%} "
                      f"{median:>8,.0f} {p90:>8,.0f} {ratio:>17}")


if __name__ == "__main__":
    main()
