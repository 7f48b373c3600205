"""BatchLoader: network-ready float batches from an in-memory uint8 dataset, with tensor-op augmentation.

Why not torch's DataLoader: the whole dataset is one uint8 tensor, so a batch is a single gather.
Crop, flip, resize and normalisation run on the whole batch at once, which on a 2-core CPU is
far faster than per-image transforms in worker processes.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ofa.data.dataset import ImageTensorDataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Salts keep the random streams for shuffling, augmentation and resolution independent.
_SHUFFLE, _AUGMENT, _RESOLUTION = 1, 2, 3


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several non-negative ints (e.g. seed, epoch, step), well mixed."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2)
    return (int(state[0]) << 31) ^ int(state[1])


class BatchLoader:
    """Iterates (x, y, resolution): x float32 [B, 3, r, r] normalised, y int64 [B], r an int.

    Training: reshuffled each epoch from (seed, epoch), sharded across world_size ranks with the
    same number of batches on every rank, randomly cropped (padding pad = size // 8) and
    optionally flipped. Every batch has one resolution drawn from `resolutions` using only
    (seed, epoch, step), so all ranks agree on it (once-for-all's elastic resolution).
    Evaluation: in order, no augmentation, one resolution (the largest given), partial last
    batch kept; with world_size > 1 each rank takes every world_size-th image (ranks may then
    differ by one batch).
    """

    def __init__(
        self,
        dataset: ImageTensorDataset,
        batch_size: int,
        *,
        train: bool,
        resolutions: Sequence[int],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        hflip: bool = True,
        pad: int | None = None,
        pad_mode: str = "reflect",
    ) -> None:
        _check_args(batch_size, resolutions, seed, rank, world_size, pad_mode, mean, std)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.resolutions = [int(r) for r in resolutions] if train else [max(int(r) for r in resolutions)]
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.hflip = bool(hflip)
        size = min(dataset.images.shape[-2:])
        self.pad = min(size // 8 if pad is None else int(pad), size - 1)
        self.pad_mode = pad_mode
        mean_t = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)  # x_uint8 * scale + shift == (x / 255 - mean) / std
        self._shift = -mean_t / std_t
        self.epoch = 0
        self.drop_last = self._choose_drop_last(drop_last)

    def _choose_drop_last(self, drop_last: bool | None) -> bool:
        """Train drops the partial last batch unless that would leave no batch at all."""
        if not self.train:
            return False
        full_batches = (len(self.dataset) // self.world_size) // self.batch_size
        if drop_last is None:
            return full_batches > 0
        if drop_last and full_batches == 0:
            raise ValueError(
                f"batch size {self.batch_size} exceeds the {len(self.dataset) // self.world_size} "
                "training images per process, so drop_last leaves no batch: lower the batch size"
            )
        return bool(drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle, augmentation and resolutions the next iteration uses."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def _samples_per_rank(self) -> int:
        n = len(self.dataset)
        if not self.train:
            return len(range(self.rank, n, self.world_size))
        if self.drop_last:
            return (n // self.world_size) // self.batch_size * self.batch_size
        return math.ceil(n / self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return math.ceil(self._samples_per_rank() / self.batch_size)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """Dataset positions this rank visits in the given (default: current) epoch, in order."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        if not self.train:
            return torch.arange(self.rank, n, self.world_size)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, _SHUFFLE))
        perm = torch.randperm(n, generator=generator)
        per_rank = self._samples_per_rank()
        if not self.drop_last and per_rank * self.world_size > n:  # wrap around to even out ranks
            perm = perm.repeat(math.ceil(per_rank * self.world_size / n))
        return perm[: per_rank * self.world_size][self.rank :: self.world_size]

    def resolution_for(self, epoch: int, step: int) -> int:
        """The input resolution of batch `step` of `epoch`: the same on every rank."""
        if len(self.resolutions) == 1:
            return self.resolutions[0]
        return self.resolutions[mix_seed(self.seed, epoch, step, _RESOLUTION) % len(self.resolutions)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        epoch = self.epoch
        order = self.indices(epoch)
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, self.rank, _AUGMENT))
        for step in range(len(self)):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            resolution = self.resolution_for(epoch, step)
            pixels = self._augment(batch, generator) if self.train else self.dataset.images[batch]
            yield self._normalize(pixels, resolution), self.dataset.labels[batch], resolution

    def _augment(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop from the padded image, plus optional flip, as one uint8 gather."""
        images = self.dataset.images
        _, channels, height, width = images.shape
        count, pad = len(batch), self.pad
        rows = torch.arange(height) + (torch.randint(0, 2 * pad + 1, (count, 1), generator=generator) - pad)
        cols = torch.arange(width) + (torch.randint(0, 2 * pad + 1, (count, 1), generator=generator) - pad)
        if self.hflip:
            flip = torch.rand(count, 1, generator=generator) < 0.5
            cols = torch.where(flip, cols.flip(1), cols)
        inside = None
        if self.pad_mode == "reflect":
            rows, cols = _reflect(rows, height), _reflect(cols, width)
        else:
            inside = ((rows >= 0) & (rows < height))[:, None, :, None] & ((cols >= 0) & (cols < width))[:, None, None, :]
            rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
        # Flat gather from images viewed as [N*C*H*W]: cheaper than 4-way advanced indexing.
        base = (batch * (channels * height * width))[:, None, None, None]
        chan = (torch.arange(channels) * (height * width))[None, :, None, None]
        flat = base + chan + (rows * width)[:, None, :, None] + cols[:, None, None, :]
        pixels = images.reshape(-1)[flat]
        return pixels * inside if inside is not None else pixels

    def _normalize(self, pixels: torch.Tensor, resolution: int) -> torch.Tensor:
        """uint8 [B, C, H, W] -> float32 [B, 3, r, r], resized (antialiased) and normalised."""
        x = pixels.float()
        if tuple(x.shape[-2:]) != (resolution, resolution):
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True,
                              align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return torch.addcmul(self._shift, x, self._scale)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map positions in [-size+1, 2*size-2] into [0, size) by mirroring at the borders."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def _check_args(
    batch_size: int, resolutions: Sequence[int], seed: int, rank: int, world_size: int,
    pad_mode: str, mean: Sequence[float], std: Sequence[float],
) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not resolutions or any(int(r) < 1 for r in resolutions):
        raise ValueError(f"resolutions must be a non-empty list of positive sizes, got {list(resolutions)}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    if pad_mode not in ("reflect", "zeros"):
        raise ValueError(f"pad_mode must be 'reflect' or 'zeros', got {pad_mode!r}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each (std > 0), got {list(mean)}, {list(std)}")
