"""banditops: deploy machine-learning model versions with multi-armed bandits.

Every model version is an arm. :class:`Deployment` routes each request to a version chosen
by a policy (:mod:`banditops.policies`), turns delayed ground truth into a reward
(:mod:`banditops.rewards`), and lets a :class:`Guardrail` roll back a degraded version;
with :class:`ShadowParams` it scores the other versions' predictions on every label too, and
with :class:`ReleaseParams` it launches new versions dark.
"""

from banditops.deployment import Decision, Deployment, Event, Status, VersionReport
from banditops.errors import BanditOpsError
from banditops.guardrails import Guardrail, GuardrailParams, Rollback
from banditops.release import ReleaseParams
from banditops.rewards import accuracy, check_label, cost_matrix
from banditops.shadow import ShadowParams
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
    "ReleaseParams",
    "Rollback",
    "ShadowParams",
    "Status",
    "VersionReport",
    "accuracy",
    "check_label",
    "cost_matrix",
]

__version__ = "0.1.0"
