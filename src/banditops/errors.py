"""Exceptions raised by banditops: one family, so callers can catch user mistakes in one place.

Every error a user can cause derives from :class:`BanditOpsError` and carries a message
that says what was wrong and, where it helps, what to do instead.
"""

from __future__ import annotations


class BanditOpsError(Exception):
    """Base class of every error banditops raises on purpose."""


class InvalidParameterError(BanditOpsError, ValueError):
    """A constructor argument or call argument is outside its allowed range."""


class InvalidRewardError(BanditOpsError, ValueError):
    """A reward is not a finite number in [0, 1]."""


class UnknownArmError(BanditOpsError, KeyError):
    """An arm (model version) name that the policy or deployment does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class DuplicateArmError(BanditOpsError, ValueError):
    """An arm (model version) with this name exists already."""


class NoArmsError(BanditOpsError, RuntimeError):
    """A decision was asked for while no arm is live."""


class InvalidStateError(BanditOpsError, ValueError):
    """A state dictionary that ``from_state`` cannot restore."""


class UnknownDecisionError(BanditOpsError, KeyError):
    """Feedback for a decision id this deployment never issued (or has long forgotten)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DuplicateFeedbackError(BanditOpsError, ValueError):
    """Feedback for a decision that already received feedback."""


class ExpiredDecisionError(BanditOpsError, ValueError):
    """Feedback for a decision that expired (too old, or evicted when pending was full)."""


class ModelError(BanditOpsError, RuntimeError):
    """Every live model version failed on the same input, so no prediction could be served."""


class StateConflictError(BanditOpsError, ValueError):
    """The request conflicts with a version's state: not live, the last live version, ..."""


class InvalidLabelError(InvalidParameterError):
    """A label the deployment does not know (wrong class, wrong type, not a scalar)."""


class StoreError(BanditOpsError):
    """The database is unreachable, stalled or refused a write (the service answers 503)."""


class OverloadedError(BanditOpsError):
    """Too much work is queued already; the caller should retry later (the service: 503)."""


class ArtifactError(BanditOpsError):
    """An artifact is outside the allowed folders, of a refused format, holds untrusted
    types, changed since it was registered, or fails its smoke test."""


class ModelTimeoutError(BanditOpsError):
    """A model was slow on repeated calls (not once: one slow call may be the machine's)."""
