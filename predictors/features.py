"""The once-for-all predictor encoding: one-hot choices per active slot, depth and resolution.

Inactive slots (past a stage's depth) are all zeros, so two codes of the same subnet get the same
features whatever their inactive slots hold.  Everything is vectorized over `space.encode` codes:
the search scores thousands of archs per call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ofa.space import Arch, SearchSpace

__all__ = ["Encoding"]


@dataclass(frozen=True)
class Encoding:
    """Feature layout for one space: [kernel one-hot x slots | expand one-hot x slots | depth one-hot x stages | resolution one-hot]."""

    n_slots: int
    n_stages: int
    max_depth: int
    n_kernels: int
    n_expands: int
    depths: tuple[int, ...]
    n_resolutions: int

    @staticmethod
    def for_space(space: SearchSpace) -> "Encoding":
        return Encoding(
            space.n_slots, space.n_stages, space.max_depth, len(space.kernel_sizes), len(space.expand_ratios),
            tuple(space.depths), len(space.resolutions),
        )

    @property
    def code_width(self) -> int:
        return 2 * self.n_slots + self.n_stages + 1

    @property
    def n_features(self) -> int:
        return self.n_slots * (self.n_kernels + self.n_expands) + self.n_stages * len(self.depths) + self.n_resolutions

    def features(self, codes: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Features [N, n_features] of integer codes [N, code_width] (as `space.encode` returns)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.code_width:
            raise ValueError(f"codes must have shape [N, {self.code_width}] for this space, got {list(codes.shape)}")
        n, s, st = len(codes), self.n_slots, self.n_stages
        depth = np.asarray(self.depths)[codes[:, 2 * s : 2 * s + st]]  # [N, stages]
        block = np.tile(np.arange(self.max_depth), st)  # block index of each slot
        stage = np.repeat(np.arange(st), self.max_depth)
        active = (block[None, :] < depth[:, stage]).astype(dtype)  # [N, slots]
        out = np.zeros((n, self.n_features), dtype=dtype)
        rows = np.arange(n)[:, None]
        offset = 0
        out[rows, offset + np.arange(s) * self.n_kernels + codes[:, :s]] = active
        offset += s * self.n_kernels
        out[rows, offset + np.arange(s) * self.n_expands + codes[:, s : 2 * s]] = active
        offset += s * self.n_expands
        out[rows, offset + np.arange(st) * len(self.depths) + codes[:, 2 * s : 2 * s + st]] = 1
        offset += st * len(self.depths)
        out[np.arange(n), offset + codes[:, -1]] = 1
        return out

    def arch_features(self, space: SearchSpace, archs: Sequence[Arch]) -> np.ndarray:
        return self.features(space.encode(archs))
