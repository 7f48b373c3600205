"""Latency of several runners measured side by side: interleaved repeats, medians and p90.

Interleaving (A, B, C, A, B, C, ...) spreads the noise of a shared machine evenly over the
runners, so their ratio is trustworthy even when the absolute figures drift.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

__all__ = ["LatencyStats", "time_interleaved"]


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    repeats: int

    def to_dict(self) -> dict[str, float | int]:
        return {"median_ms": round(self.median_ms, 4), "p90_ms": round(self.p90_ms, 4), "repeats": self.repeats}


def time_interleaved(runners: Mapping[str, Callable[[], object]], repeats: int = 50, warmup: int = 5) -> dict[str, LatencyStats]:
    """Call every runner `warmup` times, then `repeats` rounds of one call each, in turn."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {
        name: LatencyStats(float(np.median(ms)), float(np.percentile(ms, 90)), len(ms)) for name, ms in samples.items()
    }
