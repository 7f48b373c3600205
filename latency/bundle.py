"""Profiling bundles for remote devices, and importing what they measured.

`write_bundle` packs every layer of a space (and the calibration and validation networks) as ONNX
files with a manifest and the standalone `bundle_runner.py` (numpy + onnxruntime, or trtexec).
Weights are a short repeating pattern (see `runtimes.fill_weights`), so the archive compresses to
a few MB.  `import_results` turns the runner's results.json into a calibrated, validated table.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from latency.calibrate import calibrate_with, sample_archs, validate_with
from latency.errors import LatencyError
from latency.keys import arch_from_key, space_layers
from latency.runtimes import export_onnx, fill_weights, fix_input_shape, trace_onnx
from latency.table import Entry, LatencyTable
from latency.build import NoopModel, check_resolutions
from ofa.io import atomic_write
from ofa.layers import build_static
from ofa.space import SearchSpace, SpaceError

__all__ = ["write_bundle", "import_results", "BUNDLE_RUNTIMES", "RUNNER_PATH"]

BUNDLE_RUNTIMES = ("ort-cpu", "tensorrt")
RUNNER_PATH = Path(__file__).with_name("bundle_runner.py")
TIMING_PATH = Path(__file__).with_name("timing.py")  # the runner imports it: one timing protocol everywhere
ROOT = "ofa-latency-bundle"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"{ROOT}/{name}")
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def write_bundle(
    space: SearchSpace,
    out: str | Path,
    runtime: str = "ort-cpu",
    resolutions: tuple[int, ...] | None = None,
    batch: int = 1,
    precision: str = "fp32",
    n_calibrate: int = 10,
    n_validate: int = 100,
    seed: int = 1,
    progress: bool = True,
) -> Path:
    """Write `out` (.tar.gz): ONNX of every layer and of the calibration/validation networks, manifest, runner."""
    if runtime not in BUNDLE_RUNTIMES:
        raise LatencyError(
            f"bundles time with {' or '.join(BUNDLE_RUNTIMES)}, not {runtime}: on a device with PyTorch run `ofa latency build` there"
        )
    if runtime == "ort-cpu" and precision != "fp32":
        raise LatencyError(f"ort-cpu bundles time fp32, not {precision}: use --runtime tensorrt for fp16/int8")
    resolutions = check_resolutions(space, resolutions)
    layers = space_layers(space, resolutions)
    cal = sample_archs(space, resolutions, n_calibrate, seed)
    val = sample_archs(space, resolutions, n_validate, seed + 1, exclude=[a.key() for a in cal])
    files: list[tuple[str, bytes]] = []
    manifest: dict[str, Any] = {
        "format": "ofa-latency-bundle", "version": 1, "space": space.to_dict(), "space_fingerprint": space.fingerprint(),
        "runtime": runtime, "batch": batch, "precision": precision, "resolutions": list(resolutions),
        "layers": [], "networks": {"calibration": [], "validation": []},
    }
    noop_shape = [1, 1, 1, 1]
    files.append(("models/noop.onnx", export_onnx(NoopModel(), tuple(noop_shape))))
    manifest["noop"] = {"file": "models/noop.onnx", "input_shape": noop_shape}
    traced: dict[tuple, Any] = {}
    for i, layer in enumerate(tqdm(layers, desc="export layers", disable=not progress, leave=False)):
        shape = (batch, *layer.input_chw)
        if layer.source not in traced:
            module = fill_weights(layer.module(space))
            traced[layer.source] = trace_onnx(module, batch, layer.input_chw[0], probe=min(layer.input_chw[1], 8))
        name = f"models/layer{i:05d}.onnx"
        files.append((name, fix_input_shape(traced[layer.source], shape)))
        manifest["layers"].append({"key": layer.key, "file": name, "input_shape": list(shape)})
    for part, archs in (("calibration", cal), ("validation", val)):
        for i, arch in enumerate(tqdm(archs, desc=f"export {part} networks", disable=not progress, leave=False)):
            shape = (batch, space.in_channels, arch.resolution, arch.resolution)
            name = f"models/{part}{i:04d}.onnx"
            files.append((name, export_onnx(fill_weights(build_static(space, arch)), shape)))
            manifest["networks"][part].append({"arch": arch.key(), "file": name, "input_shape": list(shape)})
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    manifest["bundle_id"] = digest

    def write(path: Path) -> None:
        with tarfile.open(path, "w:gz") as tar:
            _add(tar, "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
            _add(tar, "runner.py", RUNNER_PATH.read_bytes())
            _add(tar, "timing.py", TIMING_PATH.read_bytes())
            _add(tar, "README.txt", _README.format(runtime=runtime, n=len(layers)).encode())
            for name, data in files:
                _add(tar, name, data)

    return atomic_write(out, write)


_README = """ofa latency bundle: {n} layers for {runtime}.
On the device (Python 3, numpy, onnxruntime; or TensorRT's trtexec):
    tar xzf bundle.tar.gz && cd ofa-latency-bundle && python3 runner.py --threads N
It writes results.json (rerun to resume). Copy it back, then:
    ofa latency import results.json --out work/latency/DEVICE.json --device DEVICE
"""


def import_results(path: str | Path, device: str | None = None, statistic: str = "median") -> LatencyTable:
    """A table from a bundle runner's results.json, calibrated and validated with its networks."""
    path = Path(path)
    if not path.is_file():
        raise LatencyError(f"results file {path} does not exist: copy results.json back from the device")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LatencyError(f"{path} is not valid JSON ({exc}): copy results.json again") from None
    if not isinstance(data, dict) or data.get("format") != "ofa-latency-results":
        raise LatencyError(f"{path} is not the results.json of an ofa latency bundle runner")
    try:
        space = SearchSpace.from_dict(data["space"])
        if space.fingerprint() != data["space_fingerprint"]:
            raise LatencyError(f"{path}: its space does not match its fingerprint: rerun the bundle")
        info = data.get("device_info") or {}
        table = LatencyTable(
            space=space,
            device=device or str(info.get("board") or info.get("cpu") or "remote"),
            runtime=str(data["runtime"]), runtime_version=str(data["runtime_version"]), threads=int(data["threads"]),
            batch=int(data["batch"]), precision=str(data["precision"]), resolutions=tuple(int(r) for r in data["resolutions"]),
            entries={k: Entry.from_dict(v) for k, v in data["entries"].items()},
            call_overhead_ms=Entry.from_dict(data["call_overhead"]).value(statistic) if data.get("call_overhead") else 0.0,
            host=info, complete=bool(data.get("complete")), statistic=statistic,
        )
        nets = data.get("networks") or {}
    except (KeyError, TypeError, ValueError, SpaceError) as exc:
        if isinstance(exc, LatencyError):
            raise
        raise LatencyError(f"{path} is damaged: bad or missing field {exc}") from None
    for part, apply in (("calibration", calibrate_with), ("validation", validate_with)):
        measured = nets.get(part) or {}
        if len(measured) >= 2 and table.complete:
            archs = [arch_from_key(space, k) for k in measured]
            table = apply(table, archs, np.array([Entry.from_dict(v).value(statistic) for v in measured.values()]))
    return table
