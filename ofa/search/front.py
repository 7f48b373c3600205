"""The outcome of a search: every non-dominated feasible subnet with all its metric values."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from ofa.search.problem import Constraint, SearchError, SubnetProblem
from ofa.space import Arch, SearchSpace

__all__ = ["SearchResult", "pareto_result", "hypervolume"]


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Pareto front of one search (rows sorted by the first objective, best first)."""

    algorithm: str
    space: SearchSpace
    metric_names: tuple[str, ...]
    maximize: tuple[bool, ...]
    objectives: tuple[str, ...]
    constraints: tuple[Constraint, ...]
    codes: np.ndarray  # [N, n_var] canonical codes of the front
    values: np.ndarray  # [N, n_metrics]
    n_evaluations: int  # archs evaluated, repeats included
    n_unique: int  # distinct archs evaluated
    seconds: float
    seed: int
    explored_values: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))  # all distinct evaluated
    explored_feasible: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def archs(self) -> list[Arch]:
        return self.space.decode(self.codes)

    @property
    def duplicate_rate(self) -> float:
        """Share of evaluations spent on an arch already evaluated in this run."""
        return 1.0 - self.n_unique / self.n_evaluations if self.n_evaluations else 0.0

    @property
    def evaluations_per_second(self) -> float:
        return self.n_evaluations / self.seconds if self.seconds > 0 else float("inf")

    def column(self, metric: str) -> np.ndarray:
        return self.values[:, self.metric_names.index(metric)]

    def metrics_of(self, row: int) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.metric_names, self.values[row])}

    def best(self, metric: str | None = None) -> int:
        """Row of the front that is best on `metric` (default: the first objective)."""
        if len(self.codes) == 0:
            raise SearchError("the search found no subnet within the budgets")
        metric = metric or self.objectives[0]
        col = self.column(metric)
        return int(np.argmax(col) if self.maximize[self.metric_names.index(metric)] else np.argmin(col))

    def objective_matrix(self) -> np.ndarray:
        """Front in pymoo's minimization form (maximized metrics negated)."""
        idx = [self.metric_names.index(o) for o in self.objectives]
        sign = np.array([-1.0 if self.maximize[i] else 1.0 for i in idx])
        return self.values[:, idx] * sign


def pareto_result(problem: SubnetProblem, algorithm: str, seconds: float, seed: int) -> SearchResult:
    """Non-dominated feasible subnets among everything `problem` evaluated (not just the last population)."""
    codes, values = problem.archive()
    feasible = problem.feasible(values) if len(values) else np.zeros(0, dtype=bool)
    f_codes, f_values = codes[feasible], values[feasible]
    if len(f_codes):
        F = problem.objectives_of(f_values)
        front = NonDominatedSorting().do(F, only_non_dominated_front=True)
        front = np.asarray(front, dtype=np.int64)
        order = np.lexsort(F[front].T[::-1])  # by first objective, ties by the next
        f_codes, f_values = f_codes[front[order]], f_values[front[order]]
    return SearchResult(
        algorithm=algorithm,
        space=problem.space,
        metric_names=tuple(problem.metric_names),
        maximize=tuple(m.maximize for m in problem.metrics),
        objectives=problem.objectives,
        constraints=problem.constraints,
        codes=f_codes,
        values=f_values,
        n_evaluations=problem.n_evaluations,
        n_unique=len(codes),
        seconds=seconds,
        seed=seed,
        explored_values=values,
        explored_feasible=feasible,
    )


def hypervolume(result: SearchResult, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """Hypervolume of the front after scaling objectives so `ideal` -> 0 and `nadir` -> 1 (reference point 1.1).

    `ideal`/`nadir` are in minimization form (see `objective_matrix`); fix them per benchmark so
    algorithms are compared on the same scale.
    """
    from pymoo.indicators.hv import HV

    if len(result.codes) == 0:
        return 0.0
    scaled = (result.objective_matrix() - ideal) / (nadir - ideal)
    return float(HV(ref_point=np.full(scaled.shape[1], 1.1))(scaled))
