"""pymoo operators that respect the search space's structure.

- sampling draws each choice uniformly (as once-for-all samples subnets);
- crossover takes each stage's depth from one parent and each slot's (kernel, expand) pair from
  either parent, preferring a parent where that slot is active, so children never inherit the
  placeholder values of inactive slots;
- mutation first fills inactive slots with random choices (so a depth that grows activates random
  blocks, not the placeholder), then resamples each gene with a small probability;
- a repair step canonicalizes inactive slots and duplicate elimination hashes canonical rows, so one
  subnet is never counted twice in a population.
"""
from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from ofa.search.problem import canonicalize, code_bounds, inactive_mask
from ofa.space import SearchSpace

__all__ = [
    "random_codes",
    "crossover_codes",
    "mutate_codes",
    "SpaceSampling",
    "SpaceCrossover",
    "SpaceMutation",
    "CanonicalRepair",
    "CanonicalDuplicates",
    "unique_rows",
]


def random_codes(space: SearchSpace, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` uniformly random subnets as canonical codes."""
    bounds = code_bounds(space)
    return canonicalize(space, rng.integers(0, bounds[None, :], size=(n, len(bounds))))


def _fill_inactive(space: SearchSpace, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copy of `codes` with random choices in inactive slots (they stay inactive)."""
    codes = codes.copy()
    mask = inactive_mask(space, codes)
    s = space.n_slots
    codes[:, :s] = np.where(mask, rng.integers(0, len(space.kernel_sizes), size=mask.shape), codes[:, :s])
    codes[:, s : 2 * s] = np.where(mask, rng.integers(0, len(space.expand_ratios), size=mask.shape), codes[:, s : 2 * s])
    return codes


def crossover_codes(space: SearchSpace, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform crossover of parent rows `a`, `b` [N, n_var] that keeps each slot's block whole."""
    s, n_stages = space.n_slots, space.n_stages
    n = len(a)
    child = a.copy()
    # depth per stage and resolution: from either parent
    pick = rng.random((n, n_stages + 1)) < 0.5
    child[:, 2 * s :] = np.where(pick, b[:, 2 * s :], a[:, 2 * s :])
    # each slot's (kernel, expand) from either parent, preferring one where the slot is active
    in_a, in_b = ~inactive_mask(space, a), ~inactive_mask(space, b)
    from_b = rng.random((n, s)) < 0.5
    from_b = np.where(in_a & ~in_b, False, np.where(in_b & ~in_a, True, from_b))
    child[:, :s] = np.where(from_b, b[:, :s], a[:, :s])
    child[:, s : 2 * s] = np.where(from_b, b[:, s : 2 * s], a[:, s : 2 * s])
    return canonicalize(space, child)


def mutate_codes(space: SearchSpace, codes: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """Resample each gene with probability `prob` (to a different choice where there is one)."""
    bounds = code_bounds(space)
    codes = _fill_inactive(space, codes, rng)
    hit = rng.random(codes.shape) < prob
    # shift by 1..n-1 modulo n: a uniformly random *other* choice
    shift = (rng.random(codes.shape) * (bounds - 1)).astype(np.int64) + 1
    mutated = np.where(hit & (bounds > 1), (codes + shift) % bounds, codes)
    return canonicalize(space, mutated)


def unique_rows(codes: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row, in their original order."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(codes, axis=0, return_index=True)
    return np.sort(first)


class SpaceSampling(Sampling):
    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        return random_codes(self.space, random_state, n_samples)


class SpaceCrossover(Crossover):
    """Two parents, two children (the second with the parents' roles swapped)."""

    def __init__(self, space: SearchSpace, prob: float = 0.9):
        super().__init__(2, 2, prob=prob)
        self.space = space

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        a, b = X[0].astype(np.int64), X[1].astype(np.int64)
        return np.stack([crossover_codes(self.space, a, b, random_state), crossover_codes(self.space, b, a, random_state)])


class SpaceMutation(Mutation):
    """Per-gene resampling; `gene_prob` defaults to the reference's 0.1."""

    def __init__(self, space: SearchSpace, gene_prob: float = 0.1):
        super().__init__(prob=1.0)
        self.space = space
        self.gene_prob = gene_prob

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        return mutate_codes(self.space, np.asarray(X, dtype=np.int64), random_state, self.gene_prob)


class CanonicalRepair(Repair):
    """Inactive slots to choice 0 (after any operator, before duplicate elimination)."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space

    def _do(self, problem, X, **kwargs):
        X = np.asarray(X, dtype=np.int64)
        return canonicalize(self.space, X) if X.size else X


class CanonicalDuplicates(DuplicateElimination):
    """Exact duplicates by hashing canonical code rows: O(N), unlike pymoo's pairwise distances."""

    def _do(self, pop, other, is_duplicate):
        X = np.asarray(pop.get("X"), dtype=np.int64)
        if other is None:
            seen: set[bytes] = set()
            for i, row in enumerate(X):
                key = row.tobytes()
                if key in seen:
                    is_duplicate[i] = True
                seen.add(key)
        else:
            seen = {row.tobytes() for row in np.asarray(other.get("X"), dtype=np.int64)}
            for i, row in enumerate(X):
                if row.tobytes() in seen:
                    is_duplicate[i] = True
        return is_duplicate
