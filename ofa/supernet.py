"""The once-for-all supernet: fixed stem and first block, stages of elastic blocks, fixed head."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ofa.elastic import ElasticBlock
from ofa.errors import OfaError
from ofa.io import atomic_torch_save, atomic_write_json
from ofa.layers import StaticNet, build_first_block, build_head, build_stem
from ofa.space import Arch, SearchSpace

__all__ = ["Supernet", "CheckpointError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ofa-supernet/1"


class CheckpointError(OfaError, ValueError):
    """A checkpoint is missing, corrupt, or belongs to another search space."""


class Supernet(nn.Module):
    """All subnets of `space` in one network; `set_active(arch)` chooses which one `forward` runs."""

    def __init__(
        self, space: SearchSpace, n_classes: int | None = None, dropout: float = 0.0, class_names: Sequence[str] | None = None
    ):
        super().__init__()
        space = space.with_classes(n_classes) if n_classes is not None else space
        self.space = space
        self.n_classes = space.n_classes
        self.dropout = float(dropout)
        self.class_names = list(class_names) if class_names is not None else None
        self.stem = build_stem(space)
        self.first_block = build_first_block(space)
        stages = []
        in_ch = space.first_block.width
        for spec in space.stages:
            blocks = [
                ElasticBlock(space, in_ch if b == 0 else spec.width, spec.width, spec.stride if b == 0 else 1, spec.act, spec.se)
                for b in range(space.max_depth)
            ]
            stages.append(nn.ModuleList(blocks))
            in_ch = spec.width
        self.stages = nn.ModuleList(stages)
        self.head = build_head(space, dropout)
        self.active_arch: Arch = space.max_arch()
        self.metadata: dict[str, Any] = {}

    # ----------------------------------------------------------------- running a subnet
    def set_active(self, arch: Arch) -> None:
        """Select the subnet that `forward` runs (the input resolution is the caller's choice)."""
        self.space.validate(arch)
        slots = self.space.max_depth
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                block.set_active(arch.kernel[s * slots + b], arch.expand[s * slots + b])
        self.active_arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for stage, depth in zip(self.stages, self.active_arch.depth):
            for block, _ in zip(stage, range(depth)):
                x = block(x)
        return self.head(x)

    def blocks(self) -> list[ElasticBlock]:
        return [block for stage in self.stages for block in stage]

    @torch.no_grad()
    def extract(self, arch: Arch | None = None) -> StaticNet:
        """A plain static network with copies of the weights `arch` uses (default: the active arch)."""
        arch = self.space.validate(arch if arch is not None else self.active_arch)
        slots = self.space.max_depth
        blocks: list[nn.Module] = [copy.deepcopy(self.first_block)]
        for s, (stage, depth) in enumerate(zip(self.stages, arch.depth)):
            for b in range(depth):
                blocks.append(stage[b].extract(arch.kernel[s * slots + b], arch.expand[s * slots + b]))
        net = StaticNet(copy.deepcopy(self.stem), blocks, copy.deepcopy(self.head), arch.resolution)
        return net.train(self.training)

    @torch.no_grad()
    def sort_channels(self, protected_groups: int = 0) -> None:
        """Channel importance sorting of every elastic block (before training elastic expand)."""
        for block in self.blocks():
            block.sort_channels(protected_groups)

    # ----------------------------------------------------------------- checkpoint
    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write `weights.pt` (tensors only) and `supernet.json`, each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {**self.metadata, **(metadata or {})}
        atomic_torch_save(directory / "weights.pt", {k: v.detach().cpu() for k, v in self.state_dict().items()})
        atomic_write_json(
            directory / "supernet.json",
            {
                "format": CHECKPOINT_FORMAT,
                "space": self.space.to_dict(),
                "fingerprint": self.space.fingerprint(),
                "dropout": self.dropout,
                "class_names": self.class_names,
                "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "metadata": meta,
            },
        )
        return directory

    @staticmethod
    def load(directory: str | Path, space: SearchSpace | None = None, map_location: str = "cpu") -> "Supernet":
        """Read a checkpoint directory written by `save`; refuse one made for another `space`."""
        directory = Path(directory)
        meta_path, weights_path = directory / "supernet.json", directory / "weights.pt"
        if not directory.is_dir():
            raise CheckpointError(f"supernet checkpoint {directory} does not exist: train one with `ofa train` or import one with `ofa import-mit`")
        if not meta_path.is_file() or not weights_path.is_file():
            missing = "supernet.json" if not meta_path.is_file() else "weights.pt"
            raise CheckpointError(f"{directory} is not a supernet checkpoint: {missing} is missing")
        try:
            info = json.loads(meta_path.read_text())
            saved_space = SearchSpace.from_dict(info["space"])
        except (json.JSONDecodeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{meta_path} is corrupt ({exc}); re-save or re-import the checkpoint") from None
        if info.get("fingerprint") != saved_space.fingerprint():
            raise CheckpointError(f"{meta_path}: space fingerprint does not match its space definition; the file was edited or is corrupt")
        if space is not None and space.fingerprint() != saved_space.fingerprint():
            raise CheckpointError(
                f"supernet {directory} was built for space {saved_space.name!r} ({saved_space.fingerprint()}), "
                f"not {space.name!r} ({space.fingerprint()}): pass --space {saved_space.name} or use a matching checkpoint"
            )
        try:
            state = torch.load(weights_path, map_location=map_location, weights_only=True)
        except Exception as exc:  # truncated zip, pickle error, ...
            raise CheckpointError(f"{weights_path} is corrupt or not a tensor file ({type(exc).__name__}); re-save or re-import the checkpoint") from None
        net = Supernet(saved_space, None, info.get("dropout", 0.0), info.get("class_names"))
        net.metadata = dict(info.get("metadata") or {})
        net.load_tensors(state, source=str(weights_path))
        return net

    def load_tensors(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """`load_state_dict` with one clear error naming the first missing/unexpected/mis-shaped tensor."""
        if not isinstance(state, dict):
            raise CheckpointError(f"{source} is not a state dict of tensors")
        own = self.state_dict()
        for name, tensor in own.items():
            if name not in state:
                raise CheckpointError(f"{source}: missing tensor {name} {tuple(tensor.shape)}")
            if not isinstance(state[name], torch.Tensor) or state[name].shape != tensor.shape:
                got = tuple(state[name].shape) if isinstance(state[name], torch.Tensor) else type(state[name]).__name__
                raise CheckpointError(f"{source}: tensor {name} has shape {got}, expected {tuple(tensor.shape)}")
        for name in state:
            if name not in own:
                raise CheckpointError(f"{source}: unexpected tensor {name} {tuple(getattr(state[name], 'shape', ()))}")
        self.load_state_dict(state)
