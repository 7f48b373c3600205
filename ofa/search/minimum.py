"""The smallest value a cost (latency, params, MACs) can take in a space, found without sampling.

Per-block costs add up (a latency table is a sum over blocks; params and MACs are exact sums), so
at each resolution the cheapest subnet has the smallest depth in every stage and, in every active
slot, the cheapest (kernel, expand) choice.  We measure each slot's choices against a base subnet in
one vectorized call, assemble the cheapest subnet per resolution, and measure it to report a value
that a real subnet achieves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ofa.space import Arch, SearchSpace

__all__ = ["Minimum", "minimum_of"]


@dataclass(frozen=True)
class Minimum:
    value: float
    arch: Arch


def minimum_of(space: SearchSpace, fn: Callable[[np.ndarray], np.ndarray]) -> Minimum:
    """Cheapest subnet of `space` under an additive per-block cost `fn(codes) -> values`."""
    s = space.n_slots
    nk, ne, nr = len(space.kernel_sizes), len(space.expand_ratios), len(space.resolutions)
    n_var = 2 * s + space.n_stages + 1
    min_depth = min(space.depths)
    active = [st * space.max_depth + b for st in range(space.n_stages) for b in range(min_depth)]
    base = np.zeros((nr, n_var), dtype=np.int64)  # depth index 0 = the smallest depth
    base[:, -1] = np.arange(nr)
    # variants[r, slot, k, e]: the base subnet with one slot changed
    variants = np.repeat(base[:, None, None, None, :], len(active), axis=1)
    variants = np.repeat(np.repeat(variants, nk, axis=2), ne, axis=3).copy()
    for j, slot in enumerate(active):
        variants[:, j, :, :, slot] = np.arange(nk)[None, :, None]
        variants[:, j, :, :, s + slot] = np.arange(ne)[None, None, :]
    values = np.asarray(fn(variants.reshape(-1, n_var)), dtype=np.float64).reshape(nr, len(active), nk * ne)
    best = values.argmin(axis=2)  # [nr, active]
    cheapest = base.copy()
    for j, slot in enumerate(active):
        cheapest[:, slot] = best[:, j] // ne
        cheapest[:, s + slot] = best[:, j] % ne
    totals = np.asarray(fn(cheapest), dtype=np.float64).reshape(-1)
    r = int(np.argmin(totals))
    return Minimum(float(totals[r]), space.decode(cheapest[r : r + 1])[0])
