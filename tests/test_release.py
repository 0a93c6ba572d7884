"""Dark launch (issue 9, item 2): a new version serves nobody until its shadow rewards show it
is not worse than the best live version; a faulty one is rolled back before it serves."""

from __future__ import annotations

import random

import pytest

from banditops import Deployment
from banditops.errors import InvalidParameterError, StateConflictError
from banditops.guardrails import Guardrail
from banditops.policies import ThompsonSampling
from banditops.release import DarkLaunch, ReleaseParams
from banditops.shadow import ShadowParams


class Noisy:
    """Predicts the label (the row) right with probability ``accuracy``."""

    def __init__(self, accuracy: float, seed: int) -> None:
        self.accuracy, self.rng = accuracy, random.Random(seed)

    def predict_one(self, row: int) -> int:
        return row if self.rng.random() < self.accuracy else 1 - row


class Broken:
    def predict_one(self, row: int) -> int:
        raise RuntimeError("model file is corrupt")


def run(deployment: Deployment, rows: int, seed: int = 0, start_at: int = 0) -> list[str]:
    """Serve ``rows`` requests with immediate labels; the versions that served them."""
    rng = random.Random(seed)
    served = []
    for _ in range(rows):
        row = rng.randint(0, 1)
        decision = deployment.predict(row)
        served.append(decision.version)
        deployment.feedback(decision.id, row)
    return served


def dark_deployment(**release) -> Deployment:
    return Deployment(ThompsonSampling(seed=1), reward="accuracy", guardrail=Guardrail(),
                      release=ReleaseParams(mode="dark", **release))


def test_a_faulty_dark_release_is_rolled_back_before_it_serves_anyone() -> None:
    deployment = dark_deployment()
    deployment.register("v1", Noisy(0.90, 1))
    deployment.register("v2", Noisy(0.80, 2))  # 10 points worse
    assert deployment.status("v2") == "dark" and deployment.dark_versions == ["v2"]
    served = run(deployment, 3000)
    assert "v2" not in served
    assert deployment.status("v2") == "rolled_back"
    event = next(e for e in deployment.events() if e.kind == "rolled_back")
    assert event.version == "v2" and "dark release v2 is worse than v1" in event.reason
    gap = event.evidence["versus"]["v1"]
    assert gap["cs_lower"] > 0.01 and 0.05 < gap["mean_gap"] < 0.15


def test_a_good_dark_release_is_promoted_with_its_evidence_then_serves() -> None:
    deployment = dark_deployment()
    deployment.register("v1", Noisy(0.80, 1))
    deployment.register("v2", Noisy(0.90, 2))  # better
    served = run(deployment, 4000)
    promoted = [e for e in deployment.events() if e.kind == "promoted"]
    assert [e.version for e in promoted] == ["v2"]
    first_served = served.index("v2")
    assert first_served > 0  # nobody before the promotion
    assert promoted[0].evidence["carried"] == 500
    assert promoted[0].evidence["versus"]["v1"]["cs_upper"] < 0.01
    # joined with its pseudo-counts: Thompson's posterior holds the carried rewards at once
    assert deployment.status("v2") == "live"
    assert served[-500:].count("v2") > 450  # the better version takes the traffic


def test_dark_candidates_are_not_promoted_on_too_little_evidence() -> None:
    deployment = dark_deployment(min_samples=300)
    deployment.register("v1", Noisy(0.85, 1))
    deployment.register("v2", Noisy(0.85, 2))
    run(deployment, 299)
    assert deployment.status("v2") == "dark"
    (report,) = [r for r in deployment.versions() if r.name == "v2"]
    assert report.judgement == "evaluating" and report.shadow_learned == 299
    assert report.traffic_share == 0.0


def test_paired_evidence_promotes_versions_that_agree_faster_than_two_means_could() -> None:
    """Two versions predicting the same on every row have paired differences of zero: a
    verdict needs no more than min_samples rewards, whatever their accuracy."""
    deployment = dark_deployment()
    deployment.register("v1", Noisy(1.0, 1))
    deployment.register("v2", Noisy(1.0, 2))
    run(deployment, 600)
    assert deployment.status("v2") == "live"


def test_a_dark_version_that_raises_is_quarantined_without_touching_requests() -> None:
    deployment = dark_deployment()
    deployment.register("v1", Noisy(0.9, 1))
    deployment.register("v2", Broken())
    decision = deployment.predict(1)
    assert decision.version == "v1" and decision.prediction in (0, 1)
    assert deployment.status("v2") == "quarantined"


def test_operator_actions_on_dark_versions() -> None:
    deployment = dark_deployment()
    deployment.register("v1", Noisy(0.9, 1))
    deployment.register("v2", Noisy(0.9, 2))
    deployment.register("v3", Noisy(0.9, 3), dark=False)  # an operator's override
    assert deployment.live_versions == ["v1", "v3"] and deployment.dark_versions == ["v2"]
    with pytest.raises(StateConflictError):
        deployment.promote("v1")
    deployment.promote("v2")
    assert deployment.status("v2") == "live"
    deployment.register("v4", Noisy(0.9, 4))
    deployment.retire("v4")
    assert deployment.status("v4") == "retired" and deployment.dark_versions == []
    plain = Deployment(ThompsonSampling(seed=1))
    plain.register("v1", Noisy(0.9, 1))
    with pytest.raises(InvalidParameterError, match="release=ReleaseParams"):
        plain.register("v2", Noisy(0.9, 1), dark=True)


def test_the_first_version_goes_live_even_in_dark_mode() -> None:
    deployment = dark_deployment()
    deployment.register("v1", Noisy(0.9, 1))
    assert deployment.live_versions == ["v1"]


def test_release_params_are_checked() -> None:
    with pytest.raises(InvalidParameterError, match="release mode"):
        ReleaseParams(mode="grey")
    with pytest.raises(InvalidParameterError):
        ReleaseParams(margin=-0.1)
    with pytest.raises(InvalidParameterError):
        ReleaseParams(min_samples=1)


def test_dark_evidence_survives_a_restart() -> None:
    deployment = dark_deployment()
    deployment.register("v1", Noisy(0.85, 1))
    deployment.register("v2", Noisy(0.85, 2))
    run(deployment, 150)
    state = deployment.learning_state()
    again = dark_deployment()
    again.register("v1", Noisy(0.85, 1))
    again.register("v2", Noisy(0.85, 2))
    again.restore_learning(state)
    assert again._dark_launch.paired("v2") == 150
    assert again._dark_launch.carried("v2") == deployment._dark_launch.carried("v2")


def test_deferred_shadows_are_scored_when_attached_before_the_label() -> None:
    deployment = Deployment(ThompsonSampling(seed=1), shadow=ShadowParams(),
                            defer_shadows=True)
    deployment.register("v1", Noisy(1.0, 1))
    deployment.register("v2", Noisy(0.0, 2))
    early, late = deployment.predict(1), deployment.predict(0)
    deployment.feedback(late.id, 0)  # closed before its shadows were computed
    stored = deployment.shadow_later([(early.id, early.version, 1), (late.id, late.version, 0)])
    assert stored == (1, 1)  # the late one: its label had closed it
    deployment.feedback(early.id, 1)
    reports = {r.name: r for r in deployment.versions()}
    assert sum(r.shadow_learned for r in reports.values()) == 1
    assert sum(r.learned for r in reports.values()) == 2


def test_no_verdict_without_pairs_against_every_live_version() -> None:
    launch = DarkLaunch(ReleaseParams(min_samples=2, check_every=1), confidence=0.99)
    launch.add("new")
    assert launch.observe({"new": 1.0, "a": 1.0}, ["a", "b"]) == []
    assert launch.verdict("new", ["a", "b"]) is None


class FailsOnRealRows:
    """Answers its own health check but raises on every request's input."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, rows):
        self.calls += 1
        raise ValueError("cannot score this row")

    def healthy(self) -> bool:
        return True


def test_a_dark_version_that_fails_on_every_input_is_quarantined_not_kept_forever():
    deployment = dark_deployment()
    deployment.register("v1", Noisy(0.9, 1))
    failing = FailsOnRealRows()
    deployment.register("v2", failing)
    served = run(deployment, 25)
    assert set(served) == {"v1"}
    assert deployment.status("v2") == "quarantined"
    event = next(e for e in deployment.events() if e.kind == "quarantined")
    assert "shadow prediction raised ValueError" in event.reason
    assert failing.calls == 20  # quarantined at its 20th failure


def test_a_failing_shadow_batch_is_not_retried_row_by_row_without_end():
    deployment = Deployment(ThompsonSampling(seed=1), shadow=ShadowParams(), defer_shadows=True)
    deployment.register("v1", Noisy(1.0, 1))
    failing = FailsOnRealRows()
    deployment.register("v2", failing)
    failing.healthy = lambda: True  # type: ignore[method-assign]
    decisions = [deployment.predict(1) for _ in range(50)]
    calls_before = failing.calls
    work = deployment.shadow_later([(d.id, d.version, 1) for d in decisions
                                    if d.version == "v1"])
    assert work.attached == 0
    assert failing.calls - calls_before == 1 + 3  # the batch, then three rows, then it gives up
    assert deployment.status("v2") == "live"  # a live version keeps the benefit of the doubt


def test_shadow_targets_are_chosen_when_answered_so_unsampled_requests_cost_nothing():
    """Mode rate samples when the request is answered: a request not sampled never joins the
    service's shadow queue; one sampled is shadowed by exactly the versions chosen then."""
    deployment = Deployment(ThompsonSampling(seed=1),
                            shadow=ShadowParams(mode="rate", rate=0.1, seed=3),
                            defer_shadows=True)
    deployment.register("v1", Noisy(1.0, 1))
    deployment.register("v2", Noisy(1.0, 2))
    decisions = [deployment.predict(1) for _ in range(2000)]
    targets = [deployment.shadow_targets(d.version) for d in decisions]
    sampled = [(d, t) for d, t in zip(decisions, targets, strict=True) if t]
    assert 150 < len(sampled) < 250  # about a tenth
    assert all(t == (("v2",) if d.version == "v1" else ("v1",)) for d, t in sampled)
    work = deployment.shadow_later([(d.id, d.version, 1, t) for d, t in sampled])
    assert work == (len(sampled), 0)
    for decision in decisions:
        deployment.feedback(decision.id, 1)
    assert sum(r.shadow_learned for r in deployment.versions()) == len(sampled)
