"""Optional fine-tuning of an extracted subnet, distilled from the supernet's largest subnet.

The reference fine-tuned its published specialized nets for 25 or 75 epochs but never released
that code; this follows its progressive-shrinking recipe instead: cross-entropy on the labels
plus a soft-target cross-entropy towards the teacher (kd_ratio 1), SGD with Nesterov momentum and
a cosine learning rate.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

__all__ = ["FinetuneResult", "finetune"]


@dataclass(frozen=True)
class FinetuneResult:
    epochs: int
    steps: int
    final_loss: float  # mean loss of the last epoch
    seconds: float
    distilled: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return {"epochs": self.epochs, "steps": self.steps, "final_loss": self.final_loss, "seconds": self.seconds, "distilled": self.distilled}


def finetune(
    student: nn.Module,
    loader: Iterable,
    epochs: int,
    *,
    teacher: nn.Module | None = None,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 3e-5,
    kd_ratio: float = 1.0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> FinetuneResult:
    """Train `student` in place for `epochs` over `loader` batches `(x, y, ...)`; `teacher` stays frozen.

    `loader` may have `set_epoch(e)` (ofa.data.BatchLoader) for a fresh shuffle each epoch.
    """
    if epochs < 1:
        raise ValueError(f"fine-tuning needs at least 1 epoch, got {epochs}")
    steps_per_epoch = len(loader)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise ValueError("fine-tuning got no training batches: the training split is smaller than one batch")
    student.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    start, step, epoch_loss = time.perf_counter(), 0, float("nan")
    bar = tqdm(total=total, desc="fine-tune", unit="step", disable=not progress, leave=False)
    for epoch in range(epochs):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        loss_sum, n = 0.0, 0
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            logits = student(x)
            loss = F.cross_entropy(logits, y)
            if teacher is not None:
                with torch.no_grad():
                    soft = F.softmax(teacher(x), dim=1)
                loss = loss + kd_ratio * torch.sum(-soft * F.log_softmax(logits, dim=1), dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * y.numel()
            n += y.numel()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        epoch_loss = loss_sum / max(n, 1)
    bar.close()
    student.eval()
    return FinetuneResult(epochs, step, epoch_loss, time.perf_counter() - start, teacher is not None)
