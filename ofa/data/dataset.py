"""In-memory image datasets: whole splits as one uint8 tensor, so batches are cheap tensor gathers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch.utils.data import Dataset


class ImageTensorDataset(Dataset):
    """Images as uint8 [N, C, H, W] (C = 1 or 3, as stored) with int64 labels [N]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 [N, 1|3, H, W], got {images.dtype} {list(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be [N] with N={images.shape[0]}, got {list(labels.shape)}")
        self.images = images.contiguous()  # the loader gathers from a flat view
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "ImageTensorDataset":
        """A new dataset holding copies of the given rows, in the given order."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return ImageTensorDataset(self.images[index], self.labels[index])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) stored images."""
        return int(self.images.shape[-1])

    def __repr__(self) -> str:
        return f"ImageTensorDataset(n={len(self)}, shape={list(self.images.shape[1:])})"


@dataclass
class DataSplits:
    """Train / validation / test splits of one dataset.

    val is carved from the original training data and is disjoint from train (for BN
    re-calibration and accuracy-predictor samples); test is only for final reporting.
    """

    train: ImageTensorDataset
    val: ImageTensorDataset
    test: ImageTensorDataset
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
