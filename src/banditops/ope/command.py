"""``banditops evaluate``: read a decision log, walk it with a target, print the estimates."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from banditops.errors import InvalidParameterError
from banditops.guardrails import GuardrailParams
from banditops.ope.estimators import ESTIMATORS
from banditops.ope.evaluate import LEARN, Evaluation, evaluate
from banditops.ope.logfile import DecisionLogFrame, read_log, validate_log
from banditops.policies import parse_policy_params


def parse_pairs(option: str, pairs: list[str]) -> dict[str, Any]:
    """``["c=0.5", "window=200"]`` -> {"c": 0.5, "window": 200} (values read as JSON, else
    kept as text).

    >>> parse_pairs("--param", ["c=0.5", "test=z", "decay=null"])
    {'c': 0.5, 'test': 'z', 'decay': None}
    """
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidParameterError(f"{option} takes NAME=VALUE, got {pair!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        parsed[key.strip()] = value
    return parsed


def guardrail_params(pairs: list[str] | None) -> GuardrailParams | None:
    """``--guardrail on`` (the defaults) or ``--guardrail margin=0.02 ...``; None without."""
    if not pairs:
        return None
    settings = parse_pairs("--guardrail", [p for p in pairs if p not in ("on", "default")])
    known = list(GuardrailParams.__dataclass_fields__)
    unknown = [k for k in settings if k not in known]
    if unknown:
        raise InvalidParameterError(f"--guardrail: unknown setting {unknown[0]!r}; known: "
                                    f"{', '.join(known)}")
    return GuardrailParams(**settings)


def load_log(path: Path | None, db: str | None, deployment: str | None) -> DecisionLogFrame:
    if (path is None) == (db is None):
        raise InvalidParameterError("give a decision log file, or --db URL --deployment NAME")
    if db is not None:
        if not deployment:
            raise InvalidParameterError("--db needs --deployment NAME")
        from banditops.ope.database import log_from_database

        return validate_log(log_from_database(db, deployment), f"deployment {deployment}")
    if deployment:
        raise InvalidParameterError("--deployment goes with --db")
    return read_log(path)  # type: ignore[arg-type]


def run_evaluate_command(*, log_path: Path | None, db: str | None, deployment: str | None,
                         policy: str, params: list[str], guardrail: list[str] | None,
                         estimators: list[str] | None, seed: int, learn: str, delay: int,
                         as_json: bool, console: Console) -> Evaluation:
    chosen = list(dict.fromkeys(estimators or ESTIMATORS))
    unknown = [e for e in chosen if e not in ESTIMATORS]
    if unknown:
        raise InvalidParameterError(f"unknown estimator {unknown[0]!r}; known: "
                                    f"{', '.join(ESTIMATORS)}")
    if learn not in LEARN:
        raise InvalidParameterError(f"--learn must be one of {', '.join(LEARN)}, got {learn!r}")
    settings = parse_pairs("--param", params)
    parse_policy_params(policy, settings)  # names the bad field before the log is read
    rail = guardrail_params(guardrail)
    log = load_log(log_path, db, deployment)
    result = evaluate(log, policy, settings, guardrail=rail, seed=seed, learn=learn,
                      delay=delay, estimators=chosen)
    if as_json:
        console.print_json(json.dumps({"log": log.source, **result.as_dict()},
                                      default=_json_safe))
    else:
        print_evaluation(log, result, console, guarded=rail is not None)
    return result


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def print_evaluation(log: DecisionLogFrame, result: Evaluation, console: Console, *,
                     guarded: bool = False) -> None:
    console.print(f"[bold]{escape(result.target)}[/bold] on {escape(log.source)}: "
                  f"{result.decisions:,} decisions, {result.feedbacks:,} with feedback; the "
                  f"logged traffic earned {result.logged_mean:.4f} on average; versions "
                  f"{escape(', '.join(result.versions))}", soft_wrap=True)
    table = Table(title="Estimated mean reward of the target on this traffic")
    for name in ("estimator", "value", "95% interval", "std. error", "ESS", "notes"):
        table.add_column(name, justify="left" if name in ("estimator", "notes") else "right")
    for e in result.estimates:
        notes = [f"tau {e.details['tau']:.3g}, {e.details['switched_rows']:,} rows by the "
                 "model alone"] if "tau" in e.details else []
        notes += [w for w in e.warnings if not w.startswith("support:")]
        table.add_row(e.estimator, f"{e.value:.4f}", f"[{e.ci_low:.4f}, {e.ci_high:.4f}]",
                      f"{e.se:.4f}", f"{e.ess:,.0f}", escape("; ".join(notes)))
    console.print(table)
    for rollback in result.rollbacks:
        console.print(f"the target's guardrail rolled back {escape(str(rollback['version']))} "
                      f"at time {rollback['time']:g}: {escape(rollback['reason'])}",
                      soft_wrap=True)
    if guarded and not result.rollbacks:  # say so: silence reads like a guardrail left out
        console.print("the target's guardrail rolled back nothing on this traffic")
    for warning in result.warnings:
        console.print(f"[yellow]warning: {escape(warning)}[/yellow]", soft_wrap=True)
