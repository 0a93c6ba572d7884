"""The decision log under every Deployment: memory (replays) and SQL (the service)."""

from banditops.store.log import DecisionLog, LoggedDecision, VersionTotals
from banditops.store.memory import MemoryLog

__all__ = ["DecisionLog", "LoggedDecision", "MemoryLog", "VersionTotals"]
