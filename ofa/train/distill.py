"""The training loss: label-smoothed cross-entropy plus knowledge distillation from a teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "subnet_loss"]


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the teacher's softmax (temperature 1, as the reference): mean over the batch."""
    target = F.softmax(target_logits.detach().float(), dim=1)
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def subnet_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    kd_ratio: float = 1.0,
    label_smoothing: float = 0.1,
) -> torch.Tensor:
    """Label-smoothed CE, plus `kd_ratio` x soft CE against `teacher_logits` when given."""
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if teacher_logits is not None and kd_ratio > 0:
        loss = loss + kd_ratio * soft_cross_entropy(logits, teacher_logits)
    return loss
