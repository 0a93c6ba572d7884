"""banditops: deploy machine-learning model versions with multi-armed bandits.

Every model version is an arm. :class:`Deployment` routes each request to a version chosen
by a policy (:mod:`banditops.policies`), turns delayed ground truth into a reward
(:mod:`banditops.rewards`), and lets a :class:`Guardrail` roll back a degraded version.
"""

from banditops.deployment import Decision, Deployment, Event, Status, VersionReport
from banditops.errors import BanditOpsError
from banditops.guardrails import Guardrail, GuardrailParams, Rollback
from banditops.rewards import accuracy, check_label, cost_matrix
from banditops.store import DecisionLog, MemoryLog

__all__ = [
    "BanditOpsError",
    "Decision",
    "DecisionLog",
    "Deployment",
    "Event",
    "Guardrail",
    "GuardrailParams",
    "MemoryLog",
    "Rollback",
    "Status",
    "VersionReport",
    "accuracy",
    "check_label",
    "cost_matrix",
]

__version__ = "0.1.0"
