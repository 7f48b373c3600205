"""Which subnets a training step runs.

Each draw is a pure function of (seed, phase, step), so every process of a distributed run draws
the same subnets without communicating, and a resumed run draws what the uninterrupted run would
have: the sampler has no state to save beyond the step counter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ofa.data.loader import mix_seed
from ofa.space import Arch, SearchSpace
from ofa.train.schedule import Phase, top_choices

__all__ = ["SubnetSampler", "OpenChoices"]

_SALT = 7  # keeps the subnet stream apart from the loader's streams that share mix_seed


@dataclass(frozen=True)
class OpenChoices:
    """The choices a phase leaves open, per dimension, ascending."""

    kernels: tuple[int, ...]
    expands: tuple[float, ...]
    depths: tuple[int, ...]

    @staticmethod
    def for_phase(space: SearchSpace, phase: Phase) -> "OpenChoices":
        return OpenChoices(
            top_choices(space.kernel_sizes, phase.kernels),
            top_choices(space.expand_ratios, phase.expands),
            top_choices(space.depths, phase.depths),
        )


class SubnetSampler:
    """Draws the subnets of one step: `progressive`/`uniform` at random, `sandwich` largest + smallest + random."""

    def __init__(self, space: SearchSpace, kind: str, seed: int):
        if kind not in ("progressive", "uniform", "sandwich"):
            raise ValueError(f"unknown sampler {kind!r}")
        self.space, self.kind, self.seed = space, kind, int(seed)

    def sample(self, phase_index: int, phase: Phase, step: int, resolution: int) -> list[Arch]:
        """`phase.n_subnets` archs at `resolution` (the loader's choice for this batch)."""
        open_ = OpenChoices.for_phase(self.space, phase)
        rng = np.random.default_rng(mix_seed(self.seed, phase_index, step, _SALT))
        archs = []
        if self.kind == "sandwich":
            archs += [self._uniform(open_, -1, resolution), self._uniform(open_, 0, resolution)]
        elif phase.smallest or (phase.smallest_every > 0 and step % phase.smallest_every == 0):
            archs.append(self._uniform(open_, 0, resolution))
        elif phase.largest_every > 0 and (step - 1) % phase.largest_every == 0:
            archs.append(self._uniform(open_, -1, resolution))
        while len(archs) < phase.n_subnets:
            archs.append(self._random(open_, rng, resolution))
        return archs[: phase.n_subnets]

    def _uniform(self, open_: OpenChoices, index: int, resolution: int) -> Arch:
        n, s = self.space.n_slots, self.space.n_stages
        return Arch((open_.kernels[index],) * n, (open_.expands[index],) * n, (open_.depths[index],) * s, resolution)

    def _random(self, open_: OpenChoices, rng: np.random.Generator, resolution: int) -> Arch:
        n, s = self.space.n_slots, self.space.n_stages
        kernel = rng.choice(np.array(open_.kernels), size=n)
        expand = rng.choice(np.array(open_.expands, dtype=float), size=n)
        depth = rng.choice(np.array(open_.depths), size=s)
        return Arch(tuple(int(k) for k in kernel), tuple(float(e) for e in expand), tuple(int(d) for d in depth), resolution)
