"""BatchNorm re-calibration: a subnet's statistics differ from the supernet's, so re-estimate them."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["recalibrate_bn"]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, n_images: int = 2000, device: str | torch.device | None = None) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them on up to `n_images` images.

    Uses a cumulative average (momentum None) so the result is the exact mean over the images seen,
    independent of batch order; the model is left in eval mode.  Returns the number of images used.
    `loader` yields `x` or tuples whose first item is `x` (already at the subnet's resolution).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
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
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    if seen == 0:
        raise ValueError("recalibrate_bn got no images: the calibration loader is empty")
    return seen
