"""NSGA-II (pymoo's) over the subnet problem, with the space-aware operators."""
from __future__ import annotations

import time

from pymoo.algorithms.moo.nsga2 import NSGA2
from tqdm import tqdm

from ofa.search.front import SearchResult, pareto_result
from ofa.search.operators import CanonicalDuplicates, CanonicalRepair, SpaceCrossover, SpaceMutation, SpaceSampling
from ofa.search.problem import SearchError, SubnetProblem

__all__ = ["run_nsga2"]


def run_nsga2(
    problem: SubnetProblem,
    pop_size: int = 100,
    generations: int = 100,
    seed: int = 0,
    *,
    crossover_prob: float = 0.9,
    gene_prob: float = 0.1,
    progress: bool = False,
) -> SearchResult:
    """Run NSGA-II for `generations` and return the Pareto front of every subnet it evaluated."""
    if pop_size < 2 or generations < 1:
        raise SearchError(f"NSGA-II needs a population >= 2 and >= 1 generation, got {pop_size} and {generations}")
    space = problem.space
    algorithm = NSGA2(
        pop_size=pop_size,
        sampling=SpaceSampling(space),
        crossover=SpaceCrossover(space, prob=crossover_prob),
        mutation=SpaceMutation(space, gene_prob=gene_prob),
        repair=CanonicalRepair(space),
        eliminate_duplicates=CanonicalDuplicates(),
    )
    problem.reset()
    start = time.perf_counter()
    algorithm.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    with tqdm(total=generations, desc="nsga2", unit="gen", disable=not progress, leave=False) as bar:
        while algorithm.has_next():
            algorithm.next()
            bar.update(1)
    return pareto_result(problem, "nsga2", time.perf_counter() - start, seed)
