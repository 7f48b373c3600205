"""Layer keys: one string per distinct layer configuration whose latency a table records.

A key holds everything that changes a layer's cost (input size, channels, kernel, hidden width,
stride, SE width, activation, residual add, whether a 1x1 expand exists), so two slots or two
resolutions that produce the same layer share one measurement.  A network is the stem, the fixed
first block, its active elastic blocks and the head, so its latency is a sum over its layer keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from torch import nn

from ofa.layers import build_block, build_first_block, build_head, build_stem
from ofa.space import Arch, SearchSpace, iter_block_slots

__all__ = ["arch_from_key", "Layer", "space_layers", "arch_layer_keys", "slot_sizes", "block_key", "stem_key", "head_key"]


def _out(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def stem_key(size: int, in_ch: int, out_ch: int, stride: int) -> str:
    return f"stem-i{size}x{size}x{in_ch}-o{out_ch}-k3-s{stride}-hswish"


def block_key(size: int, in_ch: int, out_ch: int, mid: int, kernel: int, stride: int, se: int, act: str, expand_conv: bool) -> str:
    residual = int(stride == 1 and in_ch == out_ch)
    return f"block-i{size}x{size}x{in_ch}-o{out_ch}-m{mid}-k{kernel}-s{stride}-se{se}-{act}-res{residual}-exp{int(expand_conv)}"


def head_key(size: int, in_ch: int, final: int, mix: int, classes: int) -> str:
    return f"head-i{size}x{size}x{in_ch}-f{final}-m{mix}-c{classes}"


@dataclass(frozen=True)
class Layer:
    """One table entry: its key, its input shape (C, H, W) and how to build it from the space."""

    key: str
    input_chw: tuple[int, int, int]
    source: tuple  # ("stem",), ("first",), ("head",) or ("block", stage, block, kernel, expand)

    def module(self, space: SearchSpace) -> nn.Module:
        """The static module extraction produces for this layer (fresh weights)."""
        kind = self.source[0]
        if kind == "stem":
            return build_stem(space)
        if kind == "first":
            return build_first_block(space)
        if kind == "head":
            return build_head(space)
        _, stage, block, kernel, expand = self.source
        return build_block(space, stage, block, kernel, expand)


def slot_sizes(space: SearchSpace, resolution: int) -> tuple[int, int, list[int], int]:
    """(stem output side, first block output side, input side of each slot, head input side)."""
    size = _out(resolution, space.stem_stride)
    first_out = _out(size, space.first_block.stride)
    sizes, s = [], first_out
    for _, _, _, _, stride, _ in iter_block_slots(space):
        sizes.append(s)
        s = _out(s, stride)
    return size, first_out, sizes, s


def _fixed_layers(space: SearchSpace, resolution: int) -> list[Layer]:
    stem_out, first_out, _, head_in = slot_sizes(space, resolution)
    fb = space.first_block
    se = space.se_channels(space.stem_width) if fb.se else 0
    last = space.stages[-1].width
    return [
        Layer(
            stem_key(resolution, space.in_channels, space.stem_width, space.stem_stride),
            (space.in_channels, resolution, resolution),
            ("stem",),
        ),
        Layer(
            block_key(stem_out, space.stem_width, fb.width, space.stem_width, 3, fb.stride, se, fb.act, False),
            (space.stem_width, stem_out, stem_out),
            ("first",),
        ),
        Layer(head_key(head_in, last, space.final_width, space.head_width, space.n_classes), (last, head_in, head_in), ("head",)),
    ]


def _slot_layer(space: SearchSpace, slot: int, size: int, kernel: int, expand: float) -> Layer:
    stage, block = divmod(slot, space.max_depth)
    spec = space.stages[stage]
    in_ch = space.slot_in_channels(stage, block)
    mid = space.mid_channels(in_ch, expand)
    stride = spec.stride if block == 0 else 1
    se = space.se_channels(mid) if spec.se else 0
    key = block_key(size, in_ch, spec.width, mid, kernel, stride, se, spec.act, True)
    return Layer(key, (in_ch, size, size), ("block", stage, block, kernel, float(expand)))


def slot_layer_grid(space: SearchSpace, resolution: int) -> tuple[list[Layer], list[list[list[Layer]]]]:
    """Fixed layers [stem, first, head] and the elastic layer of each (slot, kernel idx, expand idx)."""
    _, _, sizes, _ = slot_sizes(space, resolution)
    grid = [
        [[_slot_layer(space, slot, sizes[slot], k, e) for e in space.expand_ratios] for k in space.kernel_sizes]
        for slot in range(space.n_slots)
    ]
    return _fixed_layers(space, resolution), grid


def space_layers(space: SearchSpace, resolutions: Sequence[int] | None = None) -> list[Layer]:
    """Every distinct layer the space produces at these resolutions (default: all), deduplicated."""
    seen: dict[str, Layer] = {}
    for res in resolutions or space.resolutions:
        fixed, grid = slot_layer_grid(space, res)
        for layer in fixed + [layer for per_k in grid for per_e in per_k for layer in per_e]:
            seen.setdefault(layer.key, layer)
    return list(seen.values())


def arch_layer_keys(space: SearchSpace, arch: Arch) -> list[str]:
    """The keys a whole network is made of: stem, first block, active blocks, head."""
    space.validate(arch)
    fixed, grid = slot_layer_grid(space, arch.resolution)
    ki = {k: i for i, k in enumerate(space.kernel_sizes)}
    ei = {float(e): i for i, e in enumerate(space.expand_ratios)}
    blocks = [grid[s][ki[arch.kernel[s]]][ei[float(arch.expand[s])]].key for s in arch.active_slots(space.max_depth)]
    return [fixed[0].key, fixed[1].key, *blocks, fixed[2].key]


def arch_from_key(space: SearchSpace, key: str) -> Arch:
    """Inverse of `Arch.key()` ("r224:7x6,5x4/...")."""
    res, body = key.split(":", 1)
    kernel, expand, depth = [], [], []
    for stage in body.split("/"):
        blocks = [b.split("x") for b in stage.split(",")]
        depth.append(len(blocks))
        pad = space.max_depth - len(blocks)
        kernel += [int(k) for k, _ in blocks] + [int(blocks[0][0])] * pad
        expand += [float(e) for _, e in blocks] + [float(blocks[0][1])] * pad
    return space.validate(Arch(tuple(kernel), tuple(expand), tuple(depth), int(res[1:])))
