"""BatchNorm re-calibration: a subnet's statistics differ from the supernet's, so re-estimate them."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["recalibrate_bn"]


class _Moments:
    """Running per-channel count, mean and sum of squared deviations of one BatchNorm's input (float64).

    Batches are merged with Chan's parallel formula, so the result is the population mean and
    variance over every image seen, whatever the batches hold: averaging per-batch variances
    instead would drop the spread between batch means.
    """

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, None, None

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        x = inputs[0].detach()
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
        mean, m2 = mean.double(), var.double() * n
        if self.mean is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * n / total)
        self.n = total


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, n_images: int = 2000, device: str | torch.device | None = None) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on up to `n_images` images.

    The forward runs in train mode (each BatchNorm normalizes with its batch's statistics, as the
    reference does), while the stored statistics are the exact population mean and unbiased
    variance of each BatchNorm's input over all images seen.  Batches should mix classes: the
    forward through a batch of one class is not representative (`ofa.evaluate.shuffled_subset`).
    The model is left in eval mode.  Returns the number of images used.
    `loader` yields `x` or tuples whose first item is `x` (already at the subnet's resolution).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    moments = [_Moments() for _ in bns]
    hooks = [bn.register_forward_pre_hook(m) for bn, m in zip(bns, moments)]
    model.train()
    device = device or next(model.parameters()).device
    seen = 0
    try:
        for batch in loader:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x[: n_images - seen].to(device)
            model(x)
            seen += x.shape[0]
            if seen >= n_images:
                break
    finally:
        for hook in hooks:
            hook.remove()
        model.eval()
    if seen == 0:
        raise ValueError("recalibrate_bn got no images: the calibration loader is empty")
    for bn, m in zip(bns, moments):
        if m.mean is None:  # a BatchNorm the forward never reached keeps fresh statistics
            bn.reset_running_stats()
            continue
        bn.running_mean.copy_(m.mean.to(bn.running_mean.dtype))
        bn.running_var.copy_((m.m2 / max(m.n - 1, 1)).to(bn.running_var.dtype))
    return seen
