"""Baselines at a chosen number of evaluations: uniform random sampling, and the reference's evolution.

`run_evolution` follows once-for-all's `EvolutionFinder` (single objective under the budgets):
a population of feasible random subnets; each generation keeps the best quarter as parents, then
refills with mutants (half) and uniform crossovers of two parents (the rest), rejecting children over
budget.  It is vectorized: candidates are generated and measured in batches.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
from tqdm import tqdm

from ofa.search.front import SearchResult, pareto_result
from ofa.search.operators import crossover_codes, mutate_codes, random_codes
from ofa.search.problem import SearchError, SubnetProblem

__all__ = ["run_random", "run_evolution"]

_MAX_REJECTION_ROUNDS = 200


def run_random(problem: SubnetProblem, n_evaluations: int, seed: int = 0, *, batch: int = 1000, progress: bool = False) -> SearchResult:
    """Evaluate `n_evaluations` uniformly random subnets; their feasible Pareto front."""
    if n_evaluations < 1:
        raise SearchError(f"random search needs >= 1 evaluation, got {n_evaluations}")
    rng = np.random.default_rng(seed)
    problem.reset()
    start = time.perf_counter()
    with tqdm(total=n_evaluations, desc="random", unit="arch", disable=not progress, leave=False) as bar:
        while problem.n_evaluations < n_evaluations:
            n = min(batch, n_evaluations - problem.n_evaluations)
            problem.measure(random_codes(problem.space, rng, n))
            bar.update(n)
    return pareto_result(problem, "random", time.perf_counter() - start, seed)


def _feasible_batch(problem: SubnetProblem, make: Callable[[int], np.ndarray], n: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` feasible candidates from `make(k)` by rejection, never spending past `budget` evaluations."""
    codes, values = [], []
    found = 0
    for _ in range(_MAX_REJECTION_ROUNDS):
        if found >= n or problem.n_evaluations >= budget:
            break
        k = min(max(2 * (n - found), 8), budget - problem.n_evaluations)
        cand = make(k)
        vals = problem.measure(cand)
        ok = problem.feasible(vals)
        codes.append(cand[ok])
        values.append(vals[ok])
        found += int(ok.sum())
    if found == 0 and problem.n_evaluations < budget:
        raise SearchError(
            "evolution found no subnet within the budgets by rejection sampling; loosen a budget or use --algorithm nsga2"
        )
    if not codes:
        return np.zeros((0, problem.n_var), dtype=np.int64), np.zeros((0, len(problem.metrics)))
    return np.concatenate(codes)[:n], np.concatenate(values)[:n]


def run_evolution(
    problem: SubnetProblem,
    population: int = 100,
    generations: int = 500,
    seed: int = 0,
    *,
    max_evaluations: int | None = None,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    gene_prob: float = 0.1,
    progress: bool = False,
) -> SearchResult:
    """Once-for-all's evolution: maximize the first objective subject to the constraints.

    Stops after `generations` or once `max_evaluations` archs (rejected ones included) were measured.
    """
    if population < 4 or generations < 1:
        raise SearchError(f"evolution needs a population >= 4 and >= 1 generation, got {population} and {generations}")
    space = problem.space
    rng = np.random.default_rng(seed)
    target = problem.objectives[0]
    col = problem.metric_names.index(target)
    sign = 1.0 if problem.metrics[col].maximize else -1.0  # larger score is better
    n_parents = max(2, int(round(parent_ratio * population)))
    n_mutants = int(round(mutation_ratio * population))
    budget = max_evaluations if max_evaluations is not None else np.iinfo(np.int64).max
    problem.reset()
    start = time.perf_counter()
    pop_codes, pop_values = _feasible_batch(problem, lambda k: random_codes(space, rng, k), population, budget)
    with tqdm(total=generations, desc="evolution", unit="gen", disable=not progress, leave=False) as bar:
        for _ in range(generations):
            if problem.n_evaluations >= budget or len(pop_codes) == 0:
                break
            order = np.argsort(-sign * pop_values[:, col], kind="stable")[:n_parents]
            parents = pop_codes[order]
            pick = lambda k: parents[rng.integers(0, len(parents), size=k)]  # noqa: E731
            mutants = _feasible_batch(problem, lambda k: mutate_codes(space, pick(k), rng, gene_prob), n_mutants, budget)
            children = _feasible_batch(
                problem, lambda k: crossover_codes(space, pick(k), pick(k), rng), population - n_mutants, budget
            )
            pop_codes = np.concatenate([parents, mutants[0], children[0]])
            pop_values = np.concatenate([pop_values[order], mutants[1], children[1]])
            bar.update(1)
    return pareto_result(problem, "evolution", time.perf_counter() - start, seed)
