"""The exported PyTorch model: `model.pt` (tensors only) and `arch.json` (arch, space, input format).

`arch.json` holds the whole search-space definition, so `load_exported(dir)` rebuilds the static
network with `ofa.layers.build_static` and needs neither the supernet nor its checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ofa.io import atomic_torch_save, atomic_write_json
from ofa.layers import StaticNet, build_static
from ofa.space import Arch, SearchSpace

from export.errors import ExportError

__all__ = ["EXPORT_FORMAT", "WEIGHTS_FILE", "ARCH_FILE", "ExportInfo", "save_torch", "read_export_info", "load_exported"]

EXPORT_FORMAT = "ofa-export/1"
WEIGHTS_FILE = "model.pt"
ARCH_FILE = "arch.json"


@dataclass(frozen=True)
class ExportInfo:
    """What a user of the exported model needs besides the weights: the net and its input format."""

    space: SearchSpace
    arch: Arch
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] | None = None

    @property
    def resolution(self) -> int:
        return self.arch.resolution

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": EXPORT_FORMAT,
            "arch": self.arch.to_dict(),
            "fingerprint": self.space.fingerprint(),
            "space": self.space.to_dict(),
            "input": {
                "shape": ["batch", 3, self.resolution, self.resolution],
                "dtype": "float32",
                "normalization": "x = (pixel / 255 - mean) / std, per RGB channel",
                "mean": list(self.mean),
                "std": list(self.std),
            },
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "weights": WEIGHTS_FILE,
        }


def save_torch(model: StaticNet, info: ExportInfo, directory: str | Path) -> Path:
    """Write `model.pt` (a state dict of CPU tensors, `weights_only` loadable) and `arch.json`."""
    directory = Path(directory)
    expected = build_static(info.space, info.arch).state_dict()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    _check_state(state, expected, "the model to export")
    atomic_torch_save(directory / WEIGHTS_FILE, state)
    atomic_write_json(directory / ARCH_FILE, info.to_dict())
    return directory / WEIGHTS_FILE


def read_export_info(directory: str | Path) -> ExportInfo:
    """Read `arch.json` of an export directory, refusing a file whose space was edited."""
    path = Path(directory) / ARCH_FILE
    if not path.is_file():
        raise ExportError(f"{path} does not exist: export the model first with `ofa export`")
    try:
        data = json.loads(path.read_text())
        space = SearchSpace.from_dict(data["space"])
        arch = Arch.from_dict(data["arch"], space)
        norm = data["input"]
        mean, std = tuple(float(v) for v in norm["mean"]), tuple(float(v) for v in norm["std"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{path} is corrupt ({type(exc).__name__}: {exc}); re-run `ofa export`") from None
    if data.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path} has format {data.get('format')!r}, expected {EXPORT_FORMAT!r}; re-run `ofa export`")
    if data.get("fingerprint") != space.fingerprint():
        raise ExportError(f"{path}: space fingerprint does not match its space definition; the file was edited, re-run `ofa export`")
    names = data.get("class_names")
    return ExportInfo(space, arch, mean, std, tuple(names) if names is not None else None)


def load_exported(directory: str | Path, map_location: str | torch.device = "cpu") -> StaticNet:
    """The exported network in eval mode, rebuilt from `arch.json` and `model.pt` (no supernet needed)."""
    info = read_export_info(directory)
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ExportError(f"{path} does not exist: re-run `ofa export`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickled objects, ...
        raise ExportError(f"{path} is corrupt or not a tensor file ({type(exc).__name__}); re-run `ofa export`") from None
    model = build_static(info.space, info.arch)
    _check_state(state, model.state_dict(), str(path))
    model.load_state_dict(state)
    return model.to(map_location).eval()


def _check_state(state: Any, expected: dict[str, torch.Tensor], source: str) -> None:
    """One clear line naming the first missing, unexpected or mis-shaped tensor."""
    if not isinstance(state, dict):
        raise ExportError(f"{source} is not a state dict of tensors; re-run `ofa export`")
    for name, tensor in expected.items():
        got = state.get(name)
        if not isinstance(got, torch.Tensor):
            raise ExportError(f"{source}: missing tensor {name} {tuple(tensor.shape)}; it does not match arch.json, re-run `ofa export`")
        if got.shape != tensor.shape:
            raise ExportError(
                f"{source}: tensor {name} has shape {tuple(got.shape)}, arch.json needs {tuple(tensor.shape)}; re-run `ofa export`"
            )
    extra: Sequence[str] = [name for name in state if name not in expected]
    if extra:
        raise ExportError(f"{source}: unexpected tensor {extra[0]}; it does not match arch.json, re-run `ofa export`")

