"""Import the published once-for-all MobileNetV3 supernets (MIT's checkpoint layout).

Nothing from the reference package is needed: we map its tensor names onto ours.  The reference
names its modules `first_conv`, `blocks.{i}.conv.{inverted_bottleneck,depth_conv,point_linear}`,
`final_expand_layer`, `feature_mix_layer`, `classifier`; elastic layers wrap their `nn.Conv2d` /
`nn.BatchNorm2d` one level deeper (`.conv.conv.weight`, `.bn.bn.weight`), and kernel transformation
matrices are stored as `depth_conv.conv.7to5_matrix`.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from ofa.space import PRESETS, SearchSpace
from ofa.supernet import CheckpointError, Supernet

__all__ = ["import_mit", "mit_name", "load_mit_state_dict"]

_FIRST_BLOCK = {
    "expand.conv.": "inverted_bottleneck.conv.",
    "expand.bn.": "inverted_bottleneck.bn.",
    "depthwise.conv.": "depth_conv.conv.",
    "depthwise.bn.": "depth_conv.bn.",
    "se.reduce.": "depth_conv.se.fc.reduce.",
    "se.expand.": "depth_conv.se.fc.expand.",
    "project.conv.": "point_linear.conv.",
    "project.bn.": "point_linear.bn.",
}
_ELASTIC_BLOCK = {
    "expand.conv.": "inverted_bottleneck.conv.conv.",
    "expand.bn.": "inverted_bottleneck.bn.bn.",
    "depthwise.conv.": "depth_conv.conv.conv.",
    "depthwise.bn.": "depth_conv.bn.bn.",
    "se.reduce.": "depth_conv.se.fc.reduce.",
    "se.expand.": "depth_conv.se.fc.expand.",
    "project.conv.": "point_linear.conv.conv.",
    "project.bn.": "point_linear.bn.bn.",
}
_HEAD = {
    "head.final.": "final_expand_layer.",
    "head.mix.": "feature_mix_layer.conv.",
    "head.classifier.": "classifier.linear.",
    "stem.": "first_conv.",
}


def _replace_prefix(name: str, table: dict[str, str]) -> str | None:
    for ours, theirs in table.items():
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    return None


def mit_name(name: str, slots_per_stage: int) -> str:
    """The reference's name for one of our supernet tensors."""
    if name.startswith("first_block."):
        rest = _replace_prefix(name[len("first_block.") :], _FIRST_BLOCK)
        if rest is not None:
            return "blocks.0.conv." + rest
    match = re.match(r"stages\.(\d+)\.(\d+)\.(.*)", name)
    if match:
        index = 1 + int(match[1]) * slots_per_stage + int(match[2])
        rest = match[3]
        if rest.startswith("kernel_transforms."):
            return f"blocks.{index}.conv.depth_conv.conv.{rest.split('.', 1)[1]}_matrix"
        mapped = _replace_prefix(rest, _ELASTIC_BLOCK)
        if mapped is not None:
            return f"blocks.{index}.conv.{mapped}"
    mapped = _replace_prefix(name, _HEAD)
    if mapped is not None:
        return mapped
    raise KeyError(f"no reference name for tensor {name}")


def load_mit_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read `{"state_dict": ...}` or a bare state dict, tensors only, stripping DataParallel's `module.`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: download a published OFA supernet (e.g. ofa_mbv3_d234_e346_k357_w1.0) or check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch tensor checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path} holds no state dict (expected {{'state_dict': ...}} or a dict of tensors)")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in data.items()}


def _detect_space(state: dict[str, torch.Tensor], source: str) -> SearchSpace:
    stem = state.get("first_conv.conv.weight")
    if stem is None:
        first = next(iter(state))
        raise CheckpointError(f"{source} is not an OFA MobileNetV3 checkpoint: no first_conv.conv.weight (first tensor is {first} {tuple(state[first].shape)})")
    for space in PRESETS.values():
        if space.stem_stride != 2:
            continue
        final = state.get("final_expand_layer.conv.weight")
        if stem.shape[0] == space.stem_width and final is not None and final.shape[:2] == (space.final_width, space.stages[-1].width):
            return space
    raise CheckpointError(
        f"{source}: first_conv.conv.weight {tuple(stem.shape)} matches no published OFA MobileNetV3 width "
        "(w1.0: 16 channels, w1.2: 24); pass space=... for a custom space"
    )


def import_mit(path: str | Path, space: SearchSpace | None = None) -> Supernet:
    """A `Supernet` holding the weights of a published once-for-all MobileNetV3 checkpoint.

    The width (w1.0 / w1.2) is detected from tensor shapes unless `space` is given.
    """
    state = load_mit_state_dict(path)
    source = str(path)
    space = space or _detect_space(state, source)
    classifier = state.get("classifier.linear.weight")
    if classifier is None:
        raise CheckpointError(f"{source}: missing tensor classifier.linear.weight")
    net = Supernet(space, n_classes=classifier.shape[0])
    ours = net.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    expected_names = set()
    for name, tensor in ours.items():
        theirs = mit_name(name, space.max_depth)
        expected_names.add(theirs)
        if theirs not in state:
            raise CheckpointError(f"{source}: missing tensor {theirs} {tuple(tensor.shape)} (for space {space.name})")
        if state[theirs].shape != tensor.shape:
            raise CheckpointError(f"{source}: tensor {theirs} has shape {tuple(state[theirs].shape)}, expected {tuple(tensor.shape)} for space {space.name}")
        mapped[name] = state[theirs]
    for theirs, tensor in state.items():
        if theirs not in expected_names:
            raise CheckpointError(f"{source}: unexpected tensor {theirs} {tuple(tensor.shape)} for space {space.name}")
    net.load_state_dict(mapped)
    net.metadata = {"imported_from": Path(path).name, "source_format": "mit-ofa"}
    return net
