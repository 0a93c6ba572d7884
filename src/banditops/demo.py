"""A short, real demonstration of the library on the census (Adult) data.

Three model versions are trained on the first census rows and deployed behind Thompson
sampling with a guardrail. Requests then stream in, with ground truth arriving 50 requests
late. Part-way through, a fourth version is released: a good model offline (its validation
score is fine) whose serving feature pipeline is broken (a feature-cache bug hands it
another request's features). Traffic moves away from it and the guardrail rolls it back,
printed as it happens.
"""

from __future__ import annotations

from collections import Counter, deque
from pathlib import Path

from rich.console import Console
from rich.table import Table

from banditops import Deployment, Event, Guardrail
from banditops.policies import ThompsonSampling
from banditops.release import ReleaseParams
from banditops.shadow import ShadowParams
from banditops.simulation.datasets import load_adult
from banditops.simulation.models import PrecomputedModel, fit, make_model
from banditops.simulation.scenarios import serving_cache_bug

TRAIN_ROWS = 8_000
VALIDATION_ROWS = 2_000


def run_demo(data_dir: str | Path | None = None, *, requests: int = 12_000, delay: int = 50,
             release_at: int = 3_000, seed: int = 0, console: Console | None = None) -> Deployment:
    console = console or Console()
    data = load_adult(data_dir)
    features, labels = data.features, data.labels.to_numpy()
    start = TRAIN_ROWS + VALIDATION_ROWS
    stream = slice(start, start + requests)
    train, valid = slice(0, TRAIN_ROWS), slice(TRAIN_ROWS, start)
    console.rule("[bold]banditops demo: census data, four model versions, one broken release")
    console.print(f"Training on rows 0-{TRAIN_ROWS:,}, validating on the next "
                  f"{VALIDATION_ROWS:,}; then {requests:,} requests, labels {delay} requests late.")

    versions = {}
    for name, family in (("v1", "logistic-regression"), ("v2", "naive-bayes"),
                         ("v3", "random-forest"), ("v4", "gradient-boosting")):
        model = make_model(family, features.iloc[train], seed=seed)
        fit(model, features.iloc[train], labels[train])
        score = float((model.predict(features.iloc[valid]) == labels[valid]).mean())
        served = model.predict(features.iloc[stream])
        if name == "v4":
            served = serving_cache_bug(served)
        versions[name] = (family, score, PrecomputedModel(served, family))
        console.print(f"  {name}: {family:<20} validation accuracy {score:.3f}")

    deployment = Deployment(
        ThompsonSampling(prior_weight=20, seed=seed), reward="accuracy",
        # Whether a person earns > 50K does not depend on which version answered, so every
        # live version's prediction is scored on every label (shadow scoring), and a new
        # release is launched dark: it serves nobody until its shadow rewards show it is
        # not worse than the best live version. The guardrail's test is anytime-valid.
        guardrail=Guardrail(min_samples=30, check_every=5, confidence=0.95),
        shadow=ShadowParams(mode="all"), release=ReleaseParams(mode="dark"),
    )

    def announce(event: Event) -> None:
        style = {"rolled_back": "bold red", "quarantined": "bold red",
                 "registered": "green", "promoted": "green"}.get(event.kind, "yellow")
        console.print(f"[{style}]  event #{event.seq} {event.kind} {event.version}: "
                      f"{event.reason}[/{style}]")

    deployment.subscribe(announce)
    for name in ("v1", "v2", "v3"):  # the versions already serving go live
        _, score, model = versions[name]
        deployment.register(name, model, validation_score=score, dark=False)

    recent: deque[str] = deque(maxlen=1000)
    in_flight: deque[tuple[str, int]] = deque()
    correct = 0
    for i in range(requests):
        if i == release_at:
            console.print(f"[bold]request {i:,}: releasing v4 dark (gradient boosting, "
                          f"validation {versions['v4'][1]:.3f}); its serving feature cache is "
                          "broken[/bold]")
            deployment.register("v4", versions["v4"][2], validation_score=versions["v4"][1])
        decision = deployment.predict(i)
        recent.append(decision.version)
        correct += decision.prediction == labels[start + i]
        in_flight.append((decision.id, i))
        if len(in_flight) > delay:
            decision_id, row = in_flight.popleft()
            deployment.feedback(decision_id, int(labels[start + row]))
        if (i + 1) % 1000 == 0:
            shares = Counter(recent)
            line = "  ".join(f"{v} {shares[v] / len(recent):4.0%}" for v in sorted(versions)
                             if v in shares)
            console.print(f"request {i + 1:>6,}  traffic (last 1,000): {line}   "
                          f"accuracy so far {correct / (i + 1):.3f}")

    table = Table(title="Versions at the end")
    for column in ("version", "family", "status", "share now", "served", "reward (95% CI)",
                   "validation"):
        table.add_column(column)
    for report in deployment.versions():
        family, score, _ = versions[report.name]
        ci = (f"{report.reward_mean:.3f} ({report.ci_low:.3f}-{report.ci_high:.3f})"
              if report.reward_mean is not None else "-")
        table.add_row(report.name, family, report.status, f"{report.traffic_share:.0%}",
                      f"{report.decisions:,}", ci, f"{score:.3f}")
    console.print(table)
    served = next(r.decisions for r in deployment.versions() if r.name == "v4")
    status = next(r.status for r in deployment.versions() if r.name == "v4")
    console.print(f"The broken release served {served:,} of the {requests - release_at:,} "
                  f"requests after its release; its status now: {status}. Model calls per "
                  f"request (shadow scoring's cost): {_calls_per_request(deployment):.2f}.")
    return deployment


def _calls_per_request(deployment: Deployment) -> float:
    """Served plus shadow predictions scored, per labelled request."""
    reports = deployment.versions()
    labelled = sum(r.learned for r in reports)
    return (labelled + sum(r.shadow_learned for r in reports)) / max(labelled, 1)
