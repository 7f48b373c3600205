"""Fitting a training run to a wall-clock budget on the machine at hand.

A schedule's epochs are the same on every machine, its minutes are not: the full `cifar-cpu` phases take
about 86 minutes on one 2-core VM and 105 on another (both estimated from timed steps; BENCHMARKS.md).  With `minutes` set (`ofa train
--budget 60m`), the trainer times a few steps of every phase and one end-of-phase evaluation on this
machine, and `fit_epoch_scale` picks the `epoch_scale` whose run fills the budget.  The fitted scale is
kept in the run directory, so a resumed run keeps it, and `--set epoch_scale=X` repeats the run exactly.

A phase that samples random subnets has steps of very different cost, and 16 of them are a small sample:
on one run the timed steps of `uniform` held 3% fewer MACs than the phase's average, those of `expand2` 6%
more.  `adjusted_seconds_per_step` corrects the timed mean by the MACs of the subnets the phase will
really draw (a control variate: the sampler is a pure function of the step, so those are known ahead).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ofa.errors import OfaError

__all__ = ["BudgetError", "PhaseProbe", "adjusted_seconds_per_step", "fit_epoch_scale", "probe_phase", "PROBE_WARMUP_STEPS", "PROBE_STEPS"]

PROBE_WARMUP_STEPS = 4  # the first steps at each input size build kernels and caches: not timed
PROBE_STEPS = 16  # timed steps per phase (data loading included, as in the run)
COST_SAMPLE_STEPS = 1024  # steps whose subnets give a phase's average MACs per step (counting them is cheap)
MAX_COST_ADJUSTMENT = 0.25  # a correction beyond +-25% of the timed mean says the fit is noise, not cost


class BudgetError(OfaError, ValueError):
    """The time budget cannot hold the run's fixed costs."""


@dataclass(frozen=True)
class PhaseProbe:
    """One phase as timed on this machine."""

    name: str
    steps_per_epoch: int
    epochs: float  # the schedule's epochs before epoch_scale
    seconds_per_step: float  # cost-adjusted (`adjusted_seconds_per_step`); the fit uses this
    timed_seconds_per_step: float  # the plain mean over the timed steps
    cost_ratio: float  # the phase's average MACs per step over the timed steps' average


def adjusted_seconds_per_step(seconds: Sequence[float], costs: Sequence[float], mean_cost: float) -> float:
    """The expected seconds per step of a phase whose average step cost is `mean_cost`, from timed steps.

    Fits seconds = a + b * cost over the timed steps (least squares, b >= 0) and evaluates it at
    `mean_cost`: the timed mean plus b times how far the timed steps' cost was from the phase's.  With
    equal costs (the teacher phase) or no positive slope it is the timed mean.  The correction is
    capped at MAX_COST_ADJUSTMENT of the mean, where one slow step has bent the line.
    """
    t, c = np.asarray(seconds, dtype=float), np.asarray(costs, dtype=float)
    if t.size == 0 or t.shape != c.shape:
        raise ValueError(f"need as many timed steps as costs, got {t.size} and {c.size}")
    mean_t, mean_c = float(t.mean()), float(c.mean())
    var_c = float(((c - mean_c) ** 2).mean())
    if var_c <= 1e-12 * max(mean_c * mean_c, 1.0):
        return mean_t
    slope = max(0.0, float(((c - mean_c) * (t - mean_t)).mean()) / var_c)
    correction = slope * (float(mean_cost) - mean_c)
    limit = MAX_COST_ADJUSTMENT * mean_t
    return mean_t + min(limit, max(-limit, correction))


def probe_phase(name: str, steps_per_epoch: int, epochs: float, seconds: Sequence[float], costs: Sequence[float],
                mean_cost: float) -> PhaseProbe:
    """A phase's probe from its timed steps, their MACs and the phase's average MACs per step."""
    adjusted = adjusted_seconds_per_step(seconds, costs, mean_cost)  # checks the lengths first
    return PhaseProbe(name, steps_per_epoch, epochs, adjusted, float(np.mean(seconds)), mean_cost / float(np.mean(costs)))


def fit_epoch_scale(probes: Sequence[PhaseProbe], eval_seconds: float, minutes: float) -> dict[str, Any]:
    """The `epoch_scale` at which the phases' steps plus one evaluation per phase take `minutes`.

    Returns a JSON-able record: the scale (rounded to 4 digits, the value a repeat run passes), the
    predicted minutes and each phase's measured seconds per step and fitted steps.
    """
    budget_s = minutes * 60.0
    step_s = sum(p.epochs * p.steps_per_epoch * p.seconds_per_step for p in probes)
    fixed_s = eval_seconds * len(probes)
    if step_s <= 0:
        raise BudgetError("the schedule has no training steps to fit to a time budget: drop --budget/minutes")
    if budget_s - fixed_s < 0.1 * budget_s:
        need_s = fixed_s / 0.9
        at_least = f"{math.ceil(need_s)}s" if need_s < 60 else f"{math.ceil(need_s / 60)}m"
        raise BudgetError(
            f"a {_duration(budget_s)} budget is too short: the end-of-phase evaluations alone take about {_duration(fixed_s)} "
            f"on this machine; give at least {at_least}, or lower eval_images and calib_images"
        )
    scale = round((budget_s - fixed_s) / step_s, 4)
    phases = {
        p.name: {"seconds_per_step": round(p.seconds_per_step, 5), "timed_seconds_per_step": round(p.timed_seconds_per_step, 5),
                 "cost_ratio": round(p.cost_ratio, 4), "steps": int(math.ceil(p.epochs * scale * p.steps_per_epoch))}
        for p in probes
    }
    predicted_s = fixed_s + sum(phases[p.name]["steps"] * p.seconds_per_step for p in probes)
    return {
        "minutes": minutes, "epoch_scale": scale, "predicted_minutes": round(predicted_s / 60, 2),
        "eval_seconds": round(eval_seconds, 2), "phases": phases,
    }


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
