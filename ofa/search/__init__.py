"""Multi-objective search for subnets: objectives are plain vectorized functions of arch codes."""
from ofa.search.baselines import run_evolution, run_random
from ofa.search.front import SearchResult, hypervolume, pareto_result
from ofa.search.minimum import minimum_of
from ofa.search.nsga2 import run_nsga2
from ofa.search.problem import Constraint, Metric, SearchError, SubnetProblem, arch_metric, canonicalize, on_subspace, restrict_resolutions

__all__ = [
    "Metric",
    "Constraint",
    "SearchError",
    "SubnetProblem",
    "SearchResult",
    "arch_metric",
    "canonicalize",
    "hypervolume",
    "minimum_of",
    "on_subspace",
    "restrict_resolutions",
    "pareto_result",
    "run_nsga2",
    "run_random",
    "run_evolution",
]
