"""Import the latency lookup tables published with MIT's once-for-all (Samsung Note10, w1.2 space).

One YAML file per input resolution (`<res>_lookup_table.yaml`) maps keys such as
`expanded_conv-input:56x56x32-output:28x28x48-expand:96-kernel:5-stride:2-idskip:0-se:1-hs:0`
(`expand` is the middle channel count) and `Conv`, `Conv_1`, `AvgPool2D`, `Conv_2`, `Logits` to
`{count, mean, std}` in ms.  The reference predicts a network as the sum of `mean` over its stem,
blocks and head; we map each of our layer keys onto its entries, so our table predicts the same.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from latency.errors import LatencyError
from latency.keys import Layer, slot_layer_grid, slot_sizes
from latency.table import Entry, LatencyTable
from ofa.space import SearchSpace

__all__ = ["read_mit_tables", "import_mit_tables", "predict_net_config", "mit_block_key"]

_FILE = re.compile(r"(\d+)_lookup_table\.ya?ml$")


def _shape(*dims: int) -> str:
    return "x".join(str(d) for d in dims)


def mit_block_key(
    size: int, in_ch: int, out_ch: int, mid: int, kernel: int, stride: int, se: bool, hswish: bool, idskip: int | None = None
) -> str:
    out = int((size - 1) / stride + 1)
    idskip = int(stride == 1 and in_ch == out_ch) if idskip is None else idskip
    return (
        f"expanded_conv-input:{_shape(size, size, in_ch)}-output:{_shape(out, out, out_ch)}-expand:{mid}-kernel:{kernel}"
        f"-stride:{stride}-idskip:{idskip}-se:{int(se)}-hs:{int(hswish)}"
    )


def _head_keys(size: int, last: int, final: int, mix: int, classes: int) -> list[str]:
    return [
        f"Conv_1-input:{_shape(size, size, last)}-output:{_shape(size, size, final)}",
        f"AvgPool2D-input:{_shape(size, size, final)}-output:1x1x{final}",
        f"Conv_2-input:1x1x{final}-output:1x1x{mix}",
        f"Logits-input:1x1x{mix}-output:{classes}",
    ]


def read_mit_tables(directory: str | Path) -> dict[int, dict[str, dict[str, float]]]:
    """{resolution: {key: {"count", "mean", "std"}}} from a directory of `<res>_lookup_table.yaml`."""
    import yaml

    directory = Path(directory)
    if not directory.is_dir():
        raise LatencyError(f"{directory} is not a directory: pass the folder holding <res>_lookup_table.yaml files")
    tables: dict[int, dict[str, dict[str, float]]] = {}
    for path in sorted(directory.iterdir()):
        match = _FILE.search(path.name)
        if not match:
            continue
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            data = yaml.load(path.read_text(), Loader=loader)
        except yaml.YAMLError as exc:
            raise LatencyError(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) and "mean" in v for v in data.values()):
            raise LatencyError(f"{path} is not a once-for-all lookup table (key: {{count, mean, std}} entries)")
        tables[int(match[1])] = data
    if not tables:
        raise LatencyError(f"no <res>_lookup_table.yaml files in {directory}: pass the folder of the published tables")
    return tables


def _layer_mit_keys(space: SearchSpace, layer: Layer, resolution: int) -> list[str]:
    kind = layer.source[0]
    stem_out, _, _, head_in = slot_sizes(space, resolution)
    if kind == "stem":
        out = math.ceil(resolution / space.stem_stride)
        return [f"Conv-input:{_shape(resolution, resolution, space.in_channels)}-output:{_shape(out, out, space.stem_width)}"]
    if kind == "head":
        return _head_keys(head_in, space.stages[-1].width, space.final_width, space.head_width, space.n_classes)
    if kind == "first":
        fb = space.first_block
        return [mit_block_key(stem_out, space.stem_width, fb.width, space.stem_width, 3, fb.stride, fb.se, fb.act == "hswish")]
    _, stage, block, kernel, expand = layer.source
    spec = space.stages[stage]
    in_ch = space.slot_in_channels(stage, block)
    stride = spec.stride if block == 0 else 1
    mid = space.mid_channels(in_ch, expand)
    return [mit_block_key(layer.input_chw[1], in_ch, spec.width, mid, kernel, stride, spec.se, spec.act == "hswish")]


def import_mit_tables(directory: str | Path, space: SearchSpace, device: str = "note10") -> LatencyTable:
    """Our table for `space` from the published YAML tables (entries the YAML lacks stay absent)."""
    tables = read_mit_tables(directory)
    bad = sorted(r for r in tables if r not in space.resolutions)
    if bad:
        raise LatencyError(
            f"tables for resolution(s) {bad} do not belong to space {space.name}: pass the space they were made for (--space ofa-mbv3-w1.2)"
        )
    entries: dict[str, Entry] = {}
    for res, data in sorted(tables.items()):
        fixed, grid = slot_layer_grid(space, res)
        for layer in fixed + [layer for per_k in grid for per_e in per_k for layer in per_e]:
            keys = _layer_mit_keys(space, layer, res)
            key = f"r{res}/{layer.key}"  # the same layer was timed separately in each resolution's table
            if key in entries or not all(k in data for k in keys):
                continue
            found = [data[k] for k in keys]
            mean = sum(float(v["mean"]) for v in found)
            std = math.sqrt(sum(float(v.get("std", 0.0)) ** 2 for v in found))
            entries[key] = Entry(mean, std, int(min(int(v.get("count", 0)) for v in found)))
    if not any("/block-" in k for k in entries):
        raise LatencyError(f"no block of space {space.name} is in these tables: pass the space they were made for (--space ofa-mbv3-w1.2)")
    return LatencyTable(
        space=space, device=device, runtime="mit-published", runtime_version="", threads=0, batch=1, precision="fp32",
        resolutions=tuple(sorted(tables)), entries=entries, host={"source": str(directory)}, source="mit-note10",
    )


def predict_net_config(tables: dict[int, dict[str, dict[str, float]]], net_config: dict[str, Any], image_size: int) -> float:
    """The reference's latency of a static network config (`net.config` of a published net)."""
    if image_size not in tables:
        raise LatencyError(f"no lookup table for resolution {image_size} (have {', '.join(map(str, sorted(tables)))})")
    table = tables[image_size]

    def query(key: str) -> float:
        if key not in table:
            raise LatencyError(f"the {image_size} lookup table has no entry {key}")
        return float(table[key]["mean"])

    first = net_config["first_conv"]
    size = (image_size + 1) // 2
    total = query(f"Conv-input:{_shape(image_size, image_size, first['in_channels'])}-output:{_shape(size, size, first['out_channels'])}")
    for block in net_config["blocks"]:
        conv = block.get("mobile_inverted_conv") or block.get("conv")
        if conv is None:
            continue
        mid = conv.get("mid_channels") or round(conv["in_channels"] * conv["expand_ratio"])
        stride = conv["stride"]
        se, hswish, idskip = bool(conv.get("use_se")), conv["act_func"] == "h_swish", int(block.get("shortcut") is not None)
        key = mit_block_key(size, conv["in_channels"], conv["out_channels"], mid, conv["kernel_size"], stride, se, hswish, idskip)
        total += query(key)
        size = int((size - 1) / stride + 1)
    final, mix, classifier = net_config["final_expand_layer"], net_config["feature_mix_layer"], net_config["classifier"]
    for key in _head_keys(size, final["in_channels"], final["out_channels"], mix["out_channels"], classifier["out_features"]):
        total += query(key)
    return total
