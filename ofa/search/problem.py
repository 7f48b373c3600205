"""The search problem: subnets as integer codes, metrics as vectorized functions of codes.

The search knows nothing of latency tables or accuracy predictors: the caller hands it named
`Metric`s (a function from a batch of `space.encode` codes to one value per row), says which are
objectives and which have an upper bound.  pymoo sees a `Problem` whose variables are the choice
indices of `space.encode`, so any pymoo algorithm can run on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from pymoo.core.problem import Problem

from ofa.errors import OfaError
from ofa.space import Arch, SearchSpace

__all__ = [
    "Metric", "Constraint", "SearchError", "SubnetProblem", "canonicalize", "code_bounds", "arch_metric",
    "restrict_resolutions", "on_subspace",
]

CodeFn = Callable[[np.ndarray], np.ndarray]


class SearchError(OfaError, ValueError):
    """A search was set up with inconsistent objectives, constraints or budgets."""


@dataclass(frozen=True)
class Metric:
    """A named, vectorized measure of subnets: `fn(codes [N, n_var]) -> values [N]`.

    `maximize` marks metrics where larger is better (accuracy); `unit` is only for display.
    """

    name: str
    fn: CodeFn
    maximize: bool = False
    unit: str = ""

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        values = np.asarray(self.fn(codes), dtype=np.float64).reshape(-1)
        if values.shape[0] != len(codes):
            raise SearchError(f"metric {self.name!r} returned {values.shape[0]} values for {len(codes)} archs")
        return values


@dataclass(frozen=True)
class Constraint:
    """Hard budget: `metric <= upper` (a subnet over any budget is infeasible)."""

    metric: str
    upper: float

    def __post_init__(self) -> None:
        if not self.upper > 0:
            raise SearchError(f"budget on {self.metric} must be positive, got {self.upper}")


def arch_metric(name: str, space: SearchSpace, fn: Callable[[list[Arch]], np.ndarray], maximize: bool = False, unit: str = "") -> Metric:
    """Wrap a function of a list of `Arch`es (e.g. a predictor's `predict`) as a code metric."""
    return Metric(name, lambda codes: fn(space.decode(codes)), maximize, unit)


def restrict_resolutions(space: SearchSpace, resolutions: Sequence[int]) -> tuple[SearchSpace, np.ndarray]:
    """`space` limited to `resolutions` (e.g. those a latency table covers), and each kept one's index in `space`.

    Search the returned space, and wrap metrics written for `space` with `on_subspace`.
    """
    from dataclasses import replace

    allowed = [r for r in space.resolutions if r in set(resolutions)]
    if not allowed:
        raise SearchError(f"none of the resolutions {sorted(resolutions)} is in space {space.name!r}")
    index = np.array([space.resolutions.index(r) for r in allowed], dtype=np.int64)
    return (space if len(allowed) == len(space.resolutions) else replace(space, resolutions=tuple(allowed))), index


def on_subspace(metric: Metric, res_index: np.ndarray) -> Metric:
    """`metric` (a function of the full space's codes) for codes of a `restrict_resolutions` space."""

    def fn(codes: np.ndarray) -> np.ndarray:
        full = np.array(codes, dtype=np.int64)
        full[:, -1] = res_index[full[:, -1]]
        return metric.fn(full)

    return Metric(metric.name, fn, metric.maximize, metric.unit)


def code_bounds(space: SearchSpace) -> np.ndarray:
    """Number of choices of each code column (kernel idx, expand idx per slot, depth idx, res idx)."""
    s = space.n_slots
    return np.array(
        [len(space.kernel_sizes)] * s + [len(space.expand_ratios)] * s + [len(space.depths)] * space.n_stages + [len(space.resolutions)],
        dtype=np.int64,
    )


def inactive_mask(space: SearchSpace, codes: np.ndarray) -> np.ndarray:
    """Boolean [N, n_slots]: slots past their stage's depth."""
    s, n_stages = space.n_slots, space.n_stages
    depth = np.asarray(space.depths)[codes[:, 2 * s : 2 * s + n_stages]]
    block = np.arange(s) % space.max_depth
    stage = np.arange(s) // space.max_depth
    return block[None, :] >= depth[:, stage]


def canonicalize(space: SearchSpace, codes: np.ndarray) -> np.ndarray:
    """Copy of `codes` with inactive slots set to choice 0, so equal subnets have equal rows."""
    codes = np.array(np.atleast_2d(codes), dtype=np.int64)
    mask = inactive_mask(space, codes)
    s = space.n_slots
    codes[:, :s][mask] = 0
    codes[:, s : 2 * s][mask] = 0
    return codes


class SubnetProblem(Problem):
    """pymoo problem over `space.encode` codes; records every evaluation in an archive.

    Objectives are minimized by pymoo, so maximized metrics are negated in `F`; constraints are
    `G = metric / upper - 1 <= 0` (scaled so budgets in ms and in MACs weigh alike).
    """

    def __init__(self, space: SearchSpace, metrics: Sequence[Metric], objectives: Sequence[str], constraints: Sequence[Constraint] = ()):
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise SearchError(f"metric names must be unique, got {names}")
        for name in list(objectives) + [c.metric for c in constraints]:
            if name not in names:
                raise SearchError(f"unknown metric {name!r}: known metrics are {', '.join(names)}")
        if not objectives:
            raise SearchError("a search needs at least one objective")
        self.space = space
        self.metrics = tuple(metrics)
        self.objectives = tuple(objectives)
        self.constraints = tuple(constraints)
        self._obj_index = [names.index(o) for o in self.objectives]
        self._obj_sign = np.array([-1.0 if self.metrics[i].maximize else 1.0 for i in self._obj_index])
        self._con_index = [names.index(c.metric) for c in self.constraints]
        self._con_upper = np.array([c.upper for c in self.constraints], dtype=np.float64)
        bounds = code_bounds(space)
        super().__init__(n_var=len(bounds), n_obj=len(self.objectives), n_ieq_constr=len(self.constraints), xl=0, xu=bounds - 1, vtype=int)
        self._archive_codes: list[np.ndarray] = []
        self._archive_values: list[np.ndarray] = []
        self.n_evaluations = 0

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def metric_values(self, codes: np.ndarray) -> np.ndarray:
        """[N, n_metrics] values of every metric (no archive, no counting)."""
        codes = canonicalize(self.space, codes)
        if len(codes) == 0:
            return np.zeros((0, len(self.metrics)))
        return np.stack([m(codes) for m in self.metrics], axis=1)

    def measure(self, codes: np.ndarray) -> np.ndarray:
        """Metric values of `codes`, counted as evaluations and kept in the archive."""
        codes = canonicalize(self.space, codes)
        values = self.metric_values(codes)
        self.n_evaluations += len(codes)
        self._archive_codes.append(codes)
        self._archive_values.append(values)
        return values

    def objectives_of(self, values: np.ndarray) -> np.ndarray:
        """pymoo's `F` (all minimized) from metric values."""
        return values[:, self._obj_index] * self._obj_sign

    def violation_of(self, values: np.ndarray) -> np.ndarray:
        """pymoo's `G` (<= 0 is feasible) from metric values."""
        if not self.constraints:
            return np.zeros((len(values), 0))
        return values[:, self._con_index] / self._con_upper - 1.0

    def feasible(self, values: np.ndarray) -> np.ndarray:
        return np.all(self.violation_of(values) <= 1e-12, axis=1)

    def _evaluate(self, x: np.ndarray, out: dict, *args, **kwargs) -> None:
        values = self.measure(np.asarray(x, dtype=np.int64))
        out["F"] = self.objectives_of(values)
        if self.constraints:
            out["G"] = self.violation_of(values)

    def archive(self) -> tuple[np.ndarray, np.ndarray]:
        """(unique codes, their metric values) of every subnet evaluated so far."""
        if not self._archive_codes:
            return np.zeros((0, self.n_var), dtype=np.int64), np.zeros((0, len(self.metrics)))
        codes = np.concatenate(self._archive_codes)
        values = np.concatenate(self._archive_values)
        _, first = np.unique(codes, axis=0, return_index=True)
        first.sort()
        return codes[first], values[first]

    def reset(self) -> None:
        """Forget the archive and the evaluation count (to reuse the problem for another run)."""
        self._archive_codes, self._archive_values, self.n_evaluations = [], [], 0
