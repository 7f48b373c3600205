"""Exact parameter and MAC counts of subnets, vectorized over many archs.

MACs are the multiply-accumulates of convolutions and linear layers at batch 1 (the convention
behind once-for-all's "595M"; biases, BatchNorm, activations and pooling are not counted).
Parameters are those of the extracted static network, BatchNorm affine terms and biases included.
Each block slot's cost only depends on its (kernel, expand) choice and the input resolution, so we
tabulate them once per space and a subnet's cost is a masked sum: thousands of archs per millisecond.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ofa.space import Arch, SearchSpace, iter_block_slots

__all__ = ["Costs", "CostModel"]


@dataclass(frozen=True)
class Costs:
    params: int
    macs: int

    def __str__(self) -> str:
        return f"{self.params / 1e6:.2f}M params, {self.macs / 1e6:.1f}M MACs"


def _out_size(size: int, stride: int) -> int:
    return math.ceil(size / stride)  # odd kernel, padding k // 2


def _conv_bn(cin: int, cout: int, k: int, groups: int, out_hw: int) -> tuple[int, int]:
    weights = cout * (cin // groups) * k * k
    return weights + 2 * cout, weights * out_hw * out_hw


def _block(space: SearchSpace, cin: int, cout: int, k: int, mid: int, stride: int, se: bool, size_in: int, has_expand: bool) -> tuple[int, int]:
    """(params, macs) of one inverted-residual block."""
    size_out = _out_size(size_in, stride)
    params = macs = 0
    if has_expand:
        p, m = _conv_bn(cin, mid, 1, 1, size_in)
        params, macs = params + p, macs + m
    p, m = _conv_bn(mid, mid, k, mid, size_out)
    params, macs = params + p, macs + m
    if se:
        hidden = space.se_channels(mid)
        params += 2 * mid * hidden + hidden + mid
        macs += 2 * mid * hidden
    p, m = _conv_bn(mid, cout, 1, 1, size_out)
    return params + p, macs + m


class CostModel:
    """Tables of per-slot costs for one space; `count_codes` works on `space.encode` output."""

    def __init__(self, space: SearchSpace):
        self.space = space
        nk, ne, nr = len(space.kernel_sizes), len(space.expand_ratios), len(space.resolutions)
        self.fixed_params = 0
        self.fixed_macs = np.zeros(nr, dtype=np.int64)
        self.slot_params = np.zeros((space.n_slots, nk, ne), dtype=np.int64)
        self.slot_macs = np.zeros((space.n_slots, nk, ne, nr), dtype=np.int64)
        for ri, res in enumerate(space.resolutions):
            size = _out_size(res, space.stem_stride)
            p, m = _conv_bn(space.in_channels, space.stem_width, 3, 1, size)
            fb = space.first_block
            p2, m2 = _block(space, space.stem_width, fb.width, 3, space.stem_width, fb.stride, fb.se, size, has_expand=False)
            size = _out_size(size, fb.stride)
            slot_sizes = []
            for _, _, _, _, stride, _ in iter_block_slots(space):
                slot_sizes.append(size)
                size = _out_size(size, stride)
            # the head sees the last stage's output size, whatever the depths
            p3, m3 = _conv_bn(space.stages[-1].width, space.final_width, 1, 1, size)
            head_p = space.final_width * space.head_width + space.head_width * space.n_classes + space.n_classes
            head_m = space.final_width * space.head_width + space.head_width * space.n_classes
            self.fixed_params = p + p2 + p3 + head_p
            self.fixed_macs[ri] = m + m2 + m3 + head_m
            for slot, _, _, cin, stride, spec in iter_block_slots(space):
                for ki, k in enumerate(space.kernel_sizes):
                    for ei, e in enumerate(space.expand_ratios):
                        mid = space.mid_channels(cin, e)
                        bp, bm = _block(space, cin, spec.width, k, mid, stride, spec.se, slot_sizes[slot], has_expand=True)
                        self.slot_params[slot, ki, ei] = bp
                        self.slot_macs[slot, ki, ei, ri] = bm
        self._block_index = np.arange(space.n_slots) % space.max_depth
        self._stage_index = np.arange(space.n_slots) // space.max_depth
        self._depths = np.array(space.depths)

    @staticmethod
    def for_space(space: SearchSpace) -> "CostModel":
        return _cost_model(space)

    def count_codes(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(params, macs) int64 arrays for integer codes [N, 2*slots + stages + 1] from `space.encode`."""
        codes = np.atleast_2d(np.asarray(codes, dtype=np.int64))
        s, n_stages = self.space.n_slots, self.space.n_stages
        k_idx, e_idx = codes[:, :s], codes[:, s : 2 * s]
        depth = self._depths[codes[:, 2 * s : 2 * s + n_stages]]
        r_idx = codes[:, -1]
        active = self._block_index[None, :] < depth[:, self._stage_index]
        slots = np.arange(s)[None, :]
        params = self.fixed_params + (self.slot_params[slots, k_idx, e_idx] * active).sum(axis=1)
        macs = self.fixed_macs[r_idx] + (self.slot_macs[slots, k_idx, e_idx, r_idx[:, None]] * active).sum(axis=1)
        return params, macs

    def count_many(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        return self.count_codes(self.space.encode(archs))

    def count(self, arch: Arch) -> Costs:
        params, macs = self.count_codes(self.space.encode([self.space.validate(arch)]))
        return Costs(int(params[0]), int(macs[0]))


@lru_cache(maxsize=32)
def _cost_model(space: SearchSpace) -> CostModel:
    return CostModel(space)
