"""Off-policy evaluation: what another policy or guardrail would have earned on logged traffic.

- :mod:`~banditops.ope.logfile`: the decision-log file (Parquet or CSV) the service and the
  replay export, validated on read and write.
- :mod:`~banditops.ope.estimators`: IPS, self-normalised IPS, doubly robust and switch-DR,
  each with a 95% interval and the effective sample size; the support check.
- :mod:`~banditops.ope.reward_model`: the doubly robust reward model.
- :mod:`~banditops.ope.evaluate`: a target policy (and guardrail) walked over a log through a
  real Deployment, and its estimates.
- :mod:`~banditops.ope.database`: a decision log read from the service's SQL database.
"""

from banditops.ope.estimators import ESTIMATORS, Estimate, OffPolicyData, Support, kish_ess
from banditops.ope.evaluate import Evaluation, evaluate, target_path
from banditops.ope.logfile import (
    DecisionLogFrame,
    LogFormatError,
    read_log,
    validate_log,
    write_log,
)

__all__ = [
    "ESTIMATORS",
    "DecisionLogFrame",
    "Estimate",
    "Evaluation",
    "LogFormatError",
    "OffPolicyData",
    "Support",
    "evaluate",
    "kish_ess",
    "read_log",
    "target_path",
    "validate_log",
    "write_log",
]
