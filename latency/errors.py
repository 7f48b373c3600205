"""The latency package's one error type (a user-facing `OfaError` and a bad value)."""
from ofa.errors import OfaError

__all__ = ["LatencyError"]


class LatencyError(OfaError, ValueError):
    """A latency table, runtime or results file cannot be used as asked; the message says why and what to do."""
