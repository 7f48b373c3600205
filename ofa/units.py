"""Values with units, as users type them: `20ms`, `1.5s`, `500us`, `5M`, `300M`, `1.2G`, `5MB`."""
from __future__ import annotations

import argparse
import re

__all__ = ["parse_duration_ms", "parse_minutes", "parse_count", "parse_bytes", "format_ms", "format_count"]

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_MINUTE_UNITS = {"s": 1 / 60, "m": 1.0, "min": 1.0, "h": 60.0}
_COUNT_UNITS = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}
_BYTE_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _parse(text: str, units: dict[str, float], what: str, forms: str) -> float:
    match = re.fullmatch(_NUMBER + r"\s*([a-zA-Zµ]*)", str(text).strip())
    if not match or match[2] not in units:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: use forms like {forms}")
    value = float(match[1]) * units[match[2]]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: must be positive")
    return value


def parse_duration_ms(text: str) -> float:
    """Milliseconds from `20ms`, `1.5s`, `500us` (a bare number is not accepted: say the unit)."""
    return _parse(text, _TIME_UNITS, "duration", "20ms, 1.5s, 500us")


def parse_minutes(text: str) -> float:
    """Minutes from a wall-clock budget: `60m`, `90min`, `1.5h`, `300s` (a bare number is not accepted)."""
    return _parse(text, _MINUTE_UNITS, "time budget", "60m, 90min, 1.5h, 300s")


def parse_count(text: str) -> int:
    """A count such as parameters or MACs: `5M`, `300M`, `1.2G`, `250k`, `1000`."""
    return int(round(_parse(text, _COUNT_UNITS, "count", "5M, 300M, 1.2G, 250k, 1000")))


def parse_bytes(text: str) -> int:
    """A size in bytes: `5MB`, `800KB`, `1.5GB`, `2MiB`."""
    return int(round(_parse(text, _BYTE_UNITS, "size", "5MB, 800KB, 1.5GB, 2MiB")))


def format_ms(ms: float) -> str:
    return f"{ms * 1e3:.0f} us" if ms < 1 else f"{ms:.2f} ms" if ms < 1000 else f"{ms / 1e3:.2f} s"


def format_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"
