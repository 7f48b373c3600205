"""Static building blocks: what an extracted subnet is made of (plain PyTorch, no elastic code).

The supernet reuses `ConvBnAct`, `InvertedResidual` and `Head` for its fixed parts, so a fixed part
of an extracted subnet is a copy of the same module.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ofa.space import Arch, SearchSpace, iter_block_slots

__all__ = ["make_activation", "ConvBnAct", "SqueezeExcite", "InvertedResidual", "Head", "StaticNet", "build_static"]


def make_activation(name: str | None) -> nn.Module:
    if name is None:
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish()  # fused op; in-place would break its backward
    raise ValueError(f"unknown activation {name!r}")


class ConvBnAct(nn.Sequential):
    """Convolution without bias, BatchNorm, optional activation ('same' padding)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: str | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.act = make_activation(act)


class SqueezeExcite(nn.Module):
    """Channel gating: global mean, 1x1 reduce, ReLU, 1x1 expand, hard sigmoid (MobileNetV3)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(F.relu(self.reduce(s), inplace=True))
        return x * F.hardsigmoid(s)


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand (absent in a stem-like block), depthwise kxk, SE, 1x1 project."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, mid: int, act: str, se_hidden: int | None, has_expand: bool = True
    ):
        super().__init__()
        if not has_expand and mid != in_ch:
            raise ValueError(f"a block without 1x1 expand needs mid == in channels, got {mid} != {in_ch}")
        self.expand = ConvBnAct(in_ch, mid, 1, act=act) if has_expand else None
        self.depthwise = ConvBnAct(mid, mid, kernel, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, se_hidden) if se_hidden else None
        self.project = ConvBnAct(mid, out_ch, 1)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class Head(nn.Module):
    """1x1 expand + hswish, global average pool, 1x1 'feature mix' + hswish, dropout, classifier."""

    def __init__(self, in_ch: int, final_width: int, head_width: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.final = ConvBnAct(in_ch, final_width, 1, act="hswish")
        self.mix = nn.Conv2d(final_width, head_width, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(x).mean((2, 3), keepdim=True)
        x = F.hardswish(self.mix(x)).flatten(1)
        return self.classifier(self.dropout(x))


class StaticNet(nn.Module):
    """A plain subnet: stem, blocks, head.  What `Supernet.extract` returns and what gets exported."""

    def __init__(self, stem: nn.Module, blocks: Sequence[nn.Module], head: Head, resolution: int | None = None):
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        self.resolution = resolution  # the input side the subnet was chosen for (informational)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build_stem(space: SearchSpace) -> ConvBnAct:
    return ConvBnAct(space.in_channels, space.stem_width, 3, space.stem_stride, act="hswish")


def build_first_block(space: SearchSpace) -> InvertedResidual:
    fb = space.first_block
    se_hidden = space.se_channels(space.stem_width) if fb.se else None
    return InvertedResidual(space.stem_width, fb.width, 3, fb.stride, space.stem_width, fb.act, se_hidden, has_expand=False)


def build_head(space: SearchSpace, dropout: float = 0.0) -> Head:
    return Head(space.stages[-1].width, space.final_width, space.head_width, space.n_classes, dropout)


def build_block(space: SearchSpace, stage: int, block: int, kernel: int, expand: float) -> InvertedResidual:
    """The static block at (stage, block) with the given choices."""
    spec = space.stages[stage]
    in_ch = space.slot_in_channels(stage, block)
    mid = space.mid_channels(in_ch, expand)
    stride = spec.stride if block == 0 else 1
    return InvertedResidual(in_ch, spec.width, kernel, stride, mid, spec.act, space.se_channels(mid) if spec.se else None)


def build_static(space: SearchSpace, arch: Arch, dropout: float = 0.0) -> StaticNet:
    """A freshly initialised static network for `arch` (for export tests and latency timing)."""
    space.validate(arch)
    blocks: list[nn.Module] = [build_first_block(space)]
    active = set(arch.active_slots(space.max_depth))
    for slot, s, b, _, _, _ in iter_block_slots(space):
        if slot in active:
            blocks.append(build_block(space, s, b, arch.kernel[slot], arch.expand[slot]))
    return StaticNet(build_stem(space), blocks, build_head(space, dropout), arch.resolution)
