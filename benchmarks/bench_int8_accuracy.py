"""INT8 accuracy benchmark: top-1 lost by ONNX Runtime INT8 across many subnets, per range rule and bias correction.

One subnet is one draw: on the lean-space cifar supernet the same quantizer lost 0.4 to 2.1 points depending
on the subnet.  This script quantizes the min, mid and max subnets and `--random` seeded samples of each
trained supernet given, under every combination of activation-range percentile (`--percentiles`) and bias
correction (off / on), and reports the mean, median and worst drop against ONNX Runtime FP32.

Per subnet: BatchNorm re-calibrated on the whole validation split (shuffled), INT8 ranges and bias
correction from the first 256 of those shuffled validation images, top-1 on the whole test split.

    python benchmarks/bench_int8_accuracy.py --supernets work/supernet [more ...] --data cifar10:PATH [--random 3]

Writes a table to stdout and benchmarks/results/bench_int8_accuracy.json.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_export import _images  # noqa: E402  (n given: a shuffled subset; the splits are class-sorted)
from export import export_onnx, ort_session, quantize_int8  # noqa: E402
from export.onnx_export import ort_logits  # noqa: E402
from ofa.bn import recalibrate_bn  # noqa: E402
from ofa.data import load_dataset  # noqa: E402
from ofa.io import atomic_write_json  # noqa: E402
from ofa.space import Arch, SearchSpace  # noqa: E402
from ofa.supernet import Supernet  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "bench_int8_accuracy.json"


def mid_arch(space: SearchSpace) -> Arch:
    """The upper-middle kernel, expand and depth at the lower-middle resolution: bench_train.py's 'mid' on the cifar space."""
    upper = lambda choices: sorted(choices)[len(choices) // 2]  # noqa: E731
    lower = sorted(space.resolutions)[(len(space.resolutions) - 1) // 2]
    return space.validate(Arch((upper(space.kernel_sizes),) * space.n_slots, (upper(space.expand_ratios),) * space.n_slots,
                               (upper(space.depths),) * space.n_stages, lower))


def archs_of(space: SearchSpace, n_random: int) -> dict[str, Arch]:
    archs = {"min": space.min_arch(), "mid": mid_arch(space), "max": space.max_arch()}
    archs.update({f"random{s}": space.sample(100 + s) for s in range(n_random)})
    return archs


def top1(path: Path, x: torch.Tensor, y: torch.Tensor, threads: int) -> float:
    return float((ort_logits(ort_session(path, threads), x).argmax(1) == y.numpy()).mean()) * 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--supernets", type=Path, nargs="+", required=True, help="trained supernet directories")
    parser.add_argument("--data", required=True, help="the dataset they were trained on, e.g. cifar10:PATH")
    parser.add_argument("--random", type=int, default=3, help="seeded random subnets per supernet besides min, mid, max")
    parser.add_argument("--percentiles", type=float, nargs="+", default=[99.99, 99.9])
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset(args.data, progress=False)
    variants = [(p, bc) for p in args.percentiles for bc in (False, True)]
    label = lambda p, bc: f"p{p:g}" + ("+bc" if bc else "")  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        for supernet_dir in args.supernets:
            net = Supernet.load(supernet_dir)
            for name, arch in archs_of(net.space, args.random).items():
                model = net.extract(arch).eval()
                val, _ = _images(splits.val, arch.resolution, splits.info, len(splits.val))
                recalibrate_bn(model, [(val,)], n_images=len(val))
                x, y = _images(splits.test, arch.resolution, splits.info)
                fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", arch.resolution)
                row = {"supernet": str(supernet_dir), "subnet": name, "arch": arch.key(), "fp32": top1(fp32, x, y, args.threads),
                       "int8": {}, "seconds": {}}
                for p, bc in variants:
                    start = time.perf_counter()
                    q = quantize_int8(fp32, Path(tmp) / "int8.onnx", val[: args.calib_images], percentile=p, bias_correction=bc)
                    row["seconds"][label(p, bc)] = round(time.perf_counter() - start, 1)
                    row["int8"][label(p, bc)] = top1(q, x, y, args.threads)
                rows.append(row)
                print(f"{supernet_dir}: {name:8s} fp32 {row['fp32']:.2f}  "
                      + "  ".join(f"{k} {row['fp32'] - v:+.2f}" for k, v in row["int8"].items()), flush=True)
    summary = {}
    print(f"\n{'rule':14s} {'mean drop':>10s} {'median':>8s} {'worst':>7s}   (points of top-1, {len(rows)} subnets)")
    for p, bc in variants:
        drops = [r["fp32"] - r["int8"][label(p, bc)] for r in rows]
        summary[label(p, bc)] = {"mean": statistics.mean(drops), "median": statistics.median(drops), "worst": max(drops)}
        print(f"{label(p, bc):14s} {statistics.mean(drops):10.2f} {statistics.median(drops):8.2f} {max(drops):7.2f}")
    atomic_write_json(args.output, {
        "benchmark": "bench_int8_accuracy", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "threads": args.threads},
        "command": " ".join(sys.argv), "rows": rows, "summary": summary,
    })
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
