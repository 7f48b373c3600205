"""The one error type the command line turns into a single clear line (exit code 1)."""

__all__ = ["OfaError"]


class OfaError(Exception):
    """A user-facing problem: bad input file, invalid arch, infeasible constraint...

    The message must name the problem and the fix in one line.  Subclasses also derive from
    ValueError where the problem is a bad value, so callers may catch either.
    """
