"""Elastic inverted-residual block: one set of weights, many (kernel, expand) settings.

- Elastic kernel: a smaller kernel is the centre of the next larger one passed through a learned
  transformation matrix (7x7 -> centre 5x5 -> 25x25 matrix -> centre 3x3 -> 9x9 matrix), shared by
  all channels of the layer, as in the once-for-all paper.
- Elastic expand: a smaller expand ratio uses the first `mid` hidden channels; `sort_channels`
  reorders them by importance so the first ones are the most useful.
- With the largest setting active the block runs exactly the static block's ops on whole weight
  tensors, so training the full network costs the same as training a static one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ofa.layers import ConvBnAct, InvertedResidual, SqueezeExcite, make_activation
from ofa.space import SearchSpace

__all__ = ["ElasticBlock", "transform_name"]


def transform_name(src: int, dst: int) -> str:
    return f"{src}to{dst}"


def _batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, channels: int) -> torch.Tensor:
    """BatchNorm over the first `channels` of `bn` (running stats updated in place on the slice)."""
    if channels == bn.num_features:
        return bn(x)
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or not bn.track_running_stats
    return F.batch_norm(
        x,
        bn.running_mean[:channels] if bn.running_mean is not None else None,
        bn.running_var[:channels] if bn.running_var is not None else None,
        bn.weight[:channels],
        bn.bias[:channels],
        use_batch_stats,
        momentum,
        bn.eps,
    )


def _center(weight: torch.Tensor, size: int) -> torch.Tensor:
    k = weight.shape[-1]
    start = (k - size) // 2
    return weight[..., start : start + size, start : start + size]


class ElasticBlock(nn.Module):
    """An inverted-residual block slot of the supernet, holding the weights of its largest setting."""

    def __init__(self, space: SearchSpace, in_ch: int, out_ch: int, stride: int, act: str, se: bool):
        super().__init__()
        self.space = space
        self.in_ch, self.out_ch, self.stride, self.act_name, self.use_se = in_ch, out_ch, stride, act, se
        self.kernel_sizes = tuple(sorted(space.kernel_sizes))
        self.max_kernel = self.kernel_sizes[-1]
        self.max_mid = space.mid_channels(in_ch, max(space.expand_ratios))
        self.expand = ConvBnAct(in_ch, self.max_mid, 1, act=act)
        self.depthwise = ConvBnAct(self.max_mid, self.max_mid, self.max_kernel, stride, groups=self.max_mid, act=act)
        # kernel transformation matrices, from each size to the next smaller one, identity at init
        self.kernel_transforms = nn.ParameterDict(
            {
                transform_name(src, dst): nn.Parameter(torch.eye(dst * dst))
                for src, dst in zip(self.kernel_sizes[::-1], self.kernel_sizes[::-1][1:])
            }
        )
        self.se = SqueezeExcite(self.max_mid, space.se_channels(self.max_mid)) if se else None
        self.project = ConvBnAct(self.max_mid, out_ch, 1)
        self.residual = stride == 1 and in_ch == out_ch
        self.act = make_activation(act)
        self.active_kernel = self.max_kernel
        self.active_expand = max(space.expand_ratios)

    def set_active(self, kernel: int, expand: float) -> None:
        self.active_kernel, self.active_expand = int(kernel), float(expand)

    @property
    def active_mid(self) -> int:
        return self.space.mid_channels(self.in_ch, self.active_expand)

    def depthwise_weight(self, kernel: int, mid: int) -> torch.Tensor:
        """Depthwise filters [mid, 1, kernel, kernel], transformed down from the largest kernel."""
        weight = self.depthwise.conv.weight[:mid]
        for src, dst in zip(self.kernel_sizes[::-1], self.kernel_sizes[::-1][1:]):
            if src <= kernel:
                break
            centre = _center(weight, dst).reshape(-1, dst * dst)
            weight = F.linear(centre, self.kernel_transforms[transform_name(src, dst)]).reshape(mid, 1, dst, dst)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid, kernel = self.active_mid, self.active_kernel
        if mid == self.max_mid and kernel == self.max_kernel:
            y = self.expand(x)
            y = self.depthwise(y)
            if self.se is not None:
                y = self.se(y)
            y = self.project(y)
            return x + y if self.residual else y
        y = F.conv2d(x, self.expand.conv.weight[:mid])
        y = self.act(_batch_norm(self.expand.bn, y, mid))
        y = F.conv2d(y, self.depthwise_weight(kernel, mid), None, self.stride, kernel // 2, 1, mid)
        y = self.act(_batch_norm(self.depthwise.bn, y, mid))
        if self.se is not None:
            y = self._se(y, mid)
        y = F.conv2d(y, self.project.conv.weight[:, :mid])
        y = _batch_norm(self.project.bn, y, self.out_ch)
        return x + y if self.residual else y

    def _se(self, y: torch.Tensor, mid: int) -> torch.Tensor:
        hidden = self.space.se_channels(mid)
        se = self.se
        s = y.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, se.reduce.weight[:hidden, :mid], se.reduce.bias[:hidden]), inplace=True)
        s = F.conv2d(s, se.expand.weight[:mid, :hidden], se.expand.bias[:mid])
        return y * F.hardsigmoid(s)

    # ----------------------------------------------------------------- extraction
    @torch.no_grad()
    def extract(self, kernel: int, expand: float) -> InvertedResidual:
        """A static block with copies of the weights this setting uses."""
        mid = self.space.mid_channels(self.in_ch, expand)
        se_hidden = self.space.se_channels(mid) if self.use_se else None
        block = InvertedResidual(self.in_ch, self.out_ch, kernel, self.stride, mid, self.act_name, se_hidden)
        _copy_conv_bn(block.expand, self.expand, out_ch=mid)
        block.depthwise.conv.weight.copy_(self.depthwise_weight(kernel, mid))
        _copy_bn(block.depthwise.bn, self.depthwise.bn, mid)
        if se_hidden:
            block.se.reduce.weight.copy_(self.se.reduce.weight[:se_hidden, :mid])
            block.se.reduce.bias.copy_(self.se.reduce.bias[:se_hidden])
            block.se.expand.weight.copy_(self.se.expand.weight[:mid, :se_hidden])
            block.se.expand.bias.copy_(self.se.expand.bias[:mid])
        block.project.conv.weight.copy_(self.project.conv.weight[:, :mid])
        _copy_bn(block.project.bn, self.project.bn, self.out_ch)
        return block

    # ----------------------------------------------------------------- channel sorting
    @torch.no_grad()
    def sort_channels(self, protected_groups: int = 0) -> None:
        """Reorder hidden channels by importance (L1 norm of the projection weights), largest first.

        With `protected_groups = n > 0`, the hidden channels are sorted within bands bounded by the
        widths of the `n` largest expand ratios below the maximum: channels that a smaller ratio
        already trained with (in an earlier phase) stay among its first channels.
        """
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        if protected_groups > 0:
            widths = sorted((self.space.mid_channels(self.in_ch, e) for e in self.space.expand_ratios), reverse=True)
            right, offset = len(importance), -len(widths) * 1e5
            for left in widths[1 : protected_groups + 1]:
                importance[left:right] += offset
                offset += 1e5
                right = left
        order = torch.argsort(importance, descending=True)
        _permute_out(self.expand, order)
        self.depthwise.conv.weight.copy_(self.depthwise.conv.weight[order])
        _permute_bn(self.depthwise.bn, order)
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])
        if self.se is not None:
            se = self.se
            se.reduce.weight.copy_(se.reduce.weight[:, order])
            se.expand.weight.copy_(se.expand.weight[order])
            se.expand.bias.copy_(se.expand.bias[order])
            se_order = torch.argsort(se.expand.weight.abs().sum(dim=(0, 2, 3)), descending=True)
            se.reduce.weight.copy_(se.reduce.weight[se_order])
            se.reduce.bias.copy_(se.reduce.bias[se_order])
            se.expand.weight.copy_(se.expand.weight[:, se_order])


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, channels: int) -> None:
    dst.weight.copy_(src.weight[:channels])
    dst.bias.copy_(src.bias[:channels])
    dst.running_mean.copy_(src.running_mean[:channels])
    dst.running_var.copy_(src.running_var[:channels])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


def _copy_conv_bn(dst: ConvBnAct, src: ConvBnAct, out_ch: int) -> None:
    dst.conv.weight.copy_(src.conv.weight[:out_ch])
    _copy_bn(dst.bn, src.bn, out_ch)


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(t[order])


def _permute_out(layer: ConvBnAct, order: torch.Tensor) -> None:
    layer.conv.weight.copy_(layer.conv.weight[order])
    _permute_bn(layer.bn, order)
