"""Interleaved repeated timing: robust medians on a shared, noisy machine.

Each runner is warmed up, then timed in several rounds that visit every runner in turn, so a burst
of load from another process lands on a few samples of many runners rather than on all samples of
one.  The median of the pooled samples is the latency; half the inter-quartile range is its spread.

Needs only numpy: the remote-device bundle ships this file beside its runner (no ofa, no torch there).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from latency.runtimes import Runner

__all__ = ["STATISTICS", "Stats", "summarize", "time_interleaved"]

STATISTICS = ("median", "p10")


@dataclass(frozen=True)
class Stats:
    median_ms: float
    spread_ms: float  # half the inter-quartile range
    count: int
    p10_ms: float  # 10th percentile: what the device gives when no other process steals it

    def value(self, statistic: str) -> float:
        return self.p10_ms if statistic == "p10" else self.median_ms

    def to_dict(self) -> dict[str, float]:
        return {"median_ms": self.median_ms, "spread_ms": self.spread_ms, "count": self.count, "p10_ms": self.p10_ms}


def summarize(samples: np.ndarray) -> Stats:
    p10, q1, med, q3 = np.percentile(samples, [10, 25, 50, 75])
    return Stats(float(med), float((q3 - q1) / 2), int(samples.size), float(p10))


def time_interleaved(
    runners: Sequence[Runner],
    rounds: int = 3,
    per_round_ms: float = 20.0,
    warmup: int = 5,
    min_runs: int = 3,
    max_runs: int = 400,
    on_step: Callable[[], None] | None = None,
) -> list[Stats]:
    """Median latency of each runner from `rounds` interleaved rounds of about `per_round_ms` each.

    A round stops at its time budget (or `max_runs`) once it has `min_runs` samples, so a slow
    moment on a loaded machine costs samples, not wall time.
    """
    estimates = []
    for runner in runners:
        runner.run(2)  # first calls allocate
        estimates.append(max(float(np.median(runner.run(warmup))), 1e-3))
    samples: list[list[np.ndarray]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, runner in enumerate(runners):
            start, count = time.perf_counter(), 0
            while count < min_runs or ((time.perf_counter() - start) * 1e3 < per_round_ms and count < max_runs):
                n = int(min(max_runs - count, 10, max(1, (per_round_ms - (time.perf_counter() - start) * 1e3) / estimates[i] / 2)))
                n = max(n, min_runs - count, 1)
                samples[i].append(runner.run(n))
                count += n
            if on_step is not None:
                on_step()
    return [summarize(np.concatenate(s)) for s in samples]
