#!/usr/bin/env python3
"""Latency profiling runner for a remote device (a Jetson, a phone, a board): no PyTorch needed.

Needs Python 3.8+, numpy and onnxruntime (or TensorRT's `trtexec` for --runtime tensorrt bundles).
Run it inside the unpacked bundle:

    python3 runner.py --threads 4            # writes results.json beside it; rerun to resume
    python3 runner.py --skip-networks        # layers only (no calibration/validation networks)

Copy results.json back and turn it into a table with
`ofa latency import results.json --out work/latency/<device>.json`.
This file and timing.py beside it (the ofa package's own `latency/timing.py`, numpy only) are all that
runs on the device: it has none of the ofa package.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from timing import time_interleaved  # noqa: E402 - latency/timing.py, shipped beside this file
RESULTS_FORMAT = "ofa-latency-results"


# ---------------------------------------------------------------------------- runtimes
class OrtRunner:
    """Same session settings as the ofa package's `latency.runtimes.ort_session`."""

    def __init__(self, path: Path, input_shape, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.feed = {"x": np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}

    def run(self, n: int) -> np.ndarray:
        out = np.empty(n)
        for i in range(n):
            t = time.perf_counter()
            self.session.run(None, self.feed)
            out[i] = time.perf_counter() - t
        return out * 1e3


class TrtexecRunner:
    """TensorRT through its `trtexec` tool (shipped with TensorRT and JetPack): GPU compute time per run."""

    def __init__(self, path: Path, input_shape, precision: str):
        exe = shutil.which("trtexec") or next((p for p in ("/usr/src/tensorrt/bin/trtexec",) if os.path.exists(p)), None)
        if exe is None:
            sys.exit("error: trtexec not found: put TensorRT's bin directory on PATH (JetPack: /usr/src/tensorrt/bin)")
        self.exe, self.path, self.precision = exe, path, precision
        self.engine = Path(tempfile.mkdtemp()) / (path.stem + ".engine")
        flags = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[precision]
        subprocess.run([exe, f"--onnx={path}", f"--saveEngine={self.engine}", *flags], check=True, capture_output=True)

    def run(self, n: int) -> np.ndarray:
        """At least 50 iterations per call: starting trtexec costs far more than a layer's run."""
        n = max(n, 50)
        times = self.engine.with_suffix(".times.json")
        cmd = [self.exe, f"--loadEngine={self.engine}", f"--iterations={n}", "--warmUp=50", "--duration=0", "--noDataTransfers"]
        cmd.append(f"--exportTimes={times}")
        subprocess.run(cmd, check=True, capture_output=True)
        return np.array([t["computeMs"] for t in json.loads(times.read_text())][-n:])


def make_runner(manifest: dict, path: Path, input_shape, threads: int):
    if manifest["runtime"] == "ort-cpu":
        return OrtRunner(path, input_shape, threads)
    return TrtexecRunner(path, input_shape, manifest["precision"])


def runtime_version(runtime: str) -> str:
    if runtime == "ort-cpu":
        import onnxruntime

        return onnxruntime.__version__
    try:
        import tensorrt

        return f"TensorRT {tensorrt.__version__}"
    except ImportError:
        return "TensorRT (trtexec)"


def device_info() -> dict:
    info = {"system": platform.platform(), "machine": platform.machine(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    for path, key in (("/proc/device-tree/model", "board"), ("/etc/nv_tegra_release", "jetpack")):
        try:
            info[key] = Path(path).read_text(errors="ignore").strip("\x00\n ").splitlines()[0]
        except (OSError, IndexError):
            pass
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith(("model name", "hardware")):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


class Progress:
    """A minimal progress line with ETA (no tqdm on the device)."""

    def __init__(self, total: int, what: str, quiet: bool):
        self.total, self.what, self.quiet, self.done, self.start = max(total, 1), what, quiet, 0, time.time()

    def step(self) -> None:
        self.done += 1
        if self.quiet:
            return
        rate = self.done / max(time.time() - self.start, 1e-9)
        eta = (self.total - self.done) / rate
        sys.stderr.write(f"\r{self.what}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%), ETA {eta:.0f} s   ")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


# ---------------------------------------------------------------------------- main
def save(path: Path, results: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Time the layers (and networks) of an ofa latency bundle on this device.")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for ONNX Runtime (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="results file (resumed if it exists; default: %(default)s)")
    parser.add_argument("--time-per-entry-ms", type=float, default=60.0, help="timing budget per layer (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per layer (default: %(default)s)")
    parser.add_argument("--time-per-net-ms", type=float, default=300.0, help="timing budget per network (default: %(default)s)")
    parser.add_argument("--net-rounds", type=int, default=5, help="interleaved rounds per network (default: %(default)s)")
    parser.add_argument("--chunk", type=int, default=64, help="models loaded at once; results are saved after each (default: %(default)s)")
    parser.add_argument("--skip-networks", action="store_true", help="time layers only")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    manifest = json.loads((HERE / "manifest.json").read_text())
    out = Path(args.out)
    fresh = {
        "format": RESULTS_FORMAT, "version": 1, "bundle_id": manifest["bundle_id"], "space": manifest["space"],
        "space_fingerprint": manifest["space_fingerprint"], "runtime": manifest["runtime"],
        "runtime_version": runtime_version(manifest["runtime"]), "threads": args.threads, "batch": manifest["batch"],
        "precision": manifest["precision"], "resolutions": manifest["resolutions"], "device_info": device_info(),
        "call_overhead_ms": None, "entries": {}, "networks": {"calibration": {}, "validation": {}}, "complete": False,
    }
    results = fresh
    if out.exists():
        old = json.loads(out.read_text())
        if old.get("bundle_id") != manifest["bundle_id"] or old.get("threads") != args.threads:
            sys.exit(f"error: {out} holds results of another bundle or thread count: move it away or pass --out")
        results = {**old, "runtime_version": fresh["runtime_version"], "device_info": fresh["device_info"]}
    if results["call_overhead_ms"] is None:
        noop = manifest["noop"]
        noop_runner = make_runner(manifest, HERE / noop["file"], noop["input_shape"], args.threads)
        results["call_overhead"] = time_interleaved([noop_runner], 3, 50.0, max_runs=2000)[0].to_dict()
        results["call_overhead_ms"] = results["call_overhead"]["median_ms"]
    todo = [layer for layer in manifest["layers"] if layer["key"] not in results["entries"]]
    progress = Progress(len(todo) * args.rounds, "layers", args.quiet)
    for start in range(0, len(todo), args.chunk):
        chunk = todo[start : start + args.chunk]
        runners = [make_runner(manifest, HERE / layer["file"], layer["input_shape"], args.threads) for layer in chunk]
        for layer, stats in zip(chunk, time_interleaved(runners, args.rounds, args.time_per_entry_ms / args.rounds, on_step=progress.step)):
            results["entries"][layer["key"]] = stats.to_dict()
        save(out, results)
    if not args.skip_networks:
        for part in ("calibration", "validation"):
            nets = [n for n in manifest["networks"][part] if n["arch"] not in results["networks"][part]]
            progress = Progress(len(nets) * args.net_rounds, f"{part} networks", args.quiet)
            for start in range(0, len(nets), args.chunk):
                chunk = nets[start : start + args.chunk]
                runners = [make_runner(manifest, HERE / n["file"], n["input_shape"], args.threads) for n in chunk]
                timed = time_interleaved(runners, args.net_rounds, args.time_per_net_ms / args.net_rounds, on_step=progress.step)
                for net, stats in zip(chunk, timed):
                    results["networks"][part][net["arch"]] = stats.to_dict()
                save(out, results)
    results["complete"] = True
    save(out, results)
    if not args.quiet:
        print(f"wrote {out}: {len(results['entries'])} layers; copy it back and run "
              f"`ofa latency import {out.name} --out work/latency/DEVICE.json`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
