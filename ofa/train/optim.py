"""SGD with Nesterov momentum, no weight decay on BatchNorm and biases, cosine LR with linear warm-up."""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["make_optimizer", "lr_at"]


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """Decay only conv/linear weights (and kernel transforms): decaying BN scales and biases hurts small nets."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)


def lr_at(step: int, total_steps: int, peak: float, warmup_steps: int) -> float:
    """LR of optimizer step `step` (0-based): linear warm-up to `peak`, then cosine decay to 0.

    A pure function of the step, so a resumed run needs no scheduler state.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    t = min(step - warmup_steps, decay_steps) / decay_steps
    return 0.5 * peak * (1.0 + math.cos(math.pi * t))
