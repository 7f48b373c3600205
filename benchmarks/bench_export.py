"""Export benchmark: eager PyTorch vs ONNX Runtime FP32 vs ONNX Runtime INT8 on this CPU.

Goals (export issue): ORT FP32 >= 1.5x faster than eager PyTorch; ORT INT8 >= 1.3x faster than
FP32 with <= 1 point top-1 drop.

Cases:
  * cifar:   with `--cifar-supernet DIR [--cifar-arch chosen.json]`, a subnet of that trained supernet:
             latency and top-1 on the CIFAR-10 test split (10,000 images) before and after INT8.
             Without it, a subnet (seeded sample, 32 px) of an UNTRAINED `cifar` supernet: latency
             only; INT8 ranges from real CIFAR-10 training images when the tarball is there.
  * mbv3:    a subnet (seeded sample, 224 px) of ofa-mbv3-w1.0 imported from the reference
             fixture ../shared/fixtures/mit-ofa-mbv3-w1.0/init.pt (random weights; our own random init
             where it is absent): latency only.
  * digits:  a `tiny` subnet trained briefly on scikit-learn's digits (16 px): latency and the
             INT8 accuracy drop on the digits test split.
Each case is exported with the project's own functions (export_onnx with parity check,
quantize_int8), then the three runners are timed with the same thread count (torch.set_num_threads
== ORT intra_op_num_threads), calls interleaved A,B,C,A,B,C,... and reported as median, p90 and the
ratio of medians.  `--cuda` adds torch-cuda vs ORT CUDA execution provider at batch 1 and 64 where
a GPU and onnxruntime-gpu are present.

    python benchmarks/bench_export.py [--threads 2] [--repeats 100] [--batches 1 16] [--cases cifar mbv3 digits]

Writes a table to stdout and benchmarks/results/bench_export.json.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from export import check_parity, export_onnx, finetune, ort_session, quantize_int8, time_interleaved  # noqa: E402
from export.onnx_export import INPUT_NAME, OUTPUT_NAME, ort_logits  # noqa: E402
from ofa.bn import recalibrate_bn  # noqa: E402
from ofa.io import atomic_write_json  # noqa: E402
from ofa.space import Arch, SearchSpace  # noqa: E402
from ofa.supernet import Supernet  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "bench_export.json"
SHARED = REPO.parent / "shared"  # the fixtures and data beside the checkout
MIT_FIXTURE = SHARED / "fixtures" / "mit-ofa-mbv3-w1.0" / "init.pt"
CIFAR = SHARED / "data" / "cifar10-jpeg.tar.gz"


@dataclass
class Case:
    name: str
    model: torch.nn.Module
    arch: Arch
    calibration: torch.Tensor  # normalized images for INT8 ranges and the parity check
    test: tuple[torch.Tensor, torch.Tensor] | None  # images, labels where accuracy means something
    note: str


def _sample_at(space: SearchSpace, resolution: int, seed: int) -> Arch:
    a = space.sample(seed)
    return space.validate(Arch(a.kernel, a.expand, a.depth, resolution))


def _images(dataset, resolution: int, info: dict, n: int | None = None):
    from ofa.data import BatchLoader
    from ofa.evaluate import shuffled_subset

    ds = dataset if n is None else shuffled_subset(dataset, n)  # splits are class-sorted: mix the classes
    loader = BatchLoader(ds, 256, train=False, resolutions=[resolution], mean=info["mean"], std=info["std"], hflip=False)
    xs, ys = zip(*[(x, y) for x, y, _ in loader])
    return torch.cat(xs), torch.cat(ys)


def case_cifar(seed: int, supernet_dir: Path | None = None, arch_path: Path | None = None) -> Case:
    """A cifar subnet: of a trained supernet (`--cifar-supernet`, accuracy on the CIFAR-10 test split), else untrained."""
    from ofa.data import load_dataset

    if supernet_dir is not None:
        net = Supernet.load(supernet_dir)
        space = net.space
        arch = Arch.load(arch_path, space) if arch_path else _sample_at(space, 32, seed)
        splits = load_dataset(f"cifar10:{CIFAR}", progress=False)
        model = net.extract(arch).eval()
        calib, _ = _images(splits.val, arch.resolution, splits.info, len(splits.val))  # shuffled: calib[:256] spans the classes
        recalibrate_bn(model, [(calib,)], n_images=len(calib))
        test = _images(splits.test, arch.resolution, splits.info)
        source = "specialized (--cifar-arch)" if arch_path else "seeded sample"
        return Case("cifar", model.eval(), arch, calib[:256], test, f"{source} subnet of the trained supernet {supernet_dir}; BN and INT8 ranges from the validation split")
    space = SearchSpace.preset("cifar")
    torch.manual_seed(seed)
    net = Supernet(space, n_classes=10)
    arch = _sample_at(space, 32, seed)
    model = net.extract(arch).eval()
    if CIFAR.is_file():
        splits = load_dataset(f"cifar10:{CIFAR}", progress=False)
        calib, _ = _images(splits.train, 32, splits.info, 512)
        recalibrate_bn(model, [(calib,)], n_images=512)
        source = "CIFAR-10 training images"
    else:
        calib = torch.randn(512, 3, 32, 32)
        source = "random images (CIFAR-10 tarball absent)"
    return Case("cifar", model, arch, calib[:256], None, f"untrained cifar supernet subnet; BN and INT8 ranges from {source}")


def case_mbv3(seed: int) -> Case:
    from ofa.mit import import_mit

    torch.manual_seed(seed)
    if MIT_FIXTURE.is_file():
        net, source = import_mit(MIT_FIXTURE), "reference fixture, random weights"
    else:  # latency only either way: our own random initialization times the same
        net, source = Supernet(SearchSpace.preset("ofa-mbv3-w1.0")), f"random weights ({MIT_FIXTURE} absent)"
    arch = _sample_at(net.space, 224, seed)
    torch.manual_seed(seed)
    calib = torch.randn(64, 3, 224, 224)
    return Case("mbv3", net.extract(arch).eval(), arch, calib, None, f"ofa-mbv3-w1.0 ({source}) subnet; INT8 ranges from random images")


def case_digits(seed: int) -> Case:
    from ofa.data import BatchLoader, load_dataset

    splits = load_dataset("digits", progress=False)
    space = SearchSpace.preset("tiny").with_classes(10)
    torch.manual_seed(seed)
    arch = _sample_at(space, 16, seed)
    model = Supernet(space).extract(arch)
    info = splits.info
    loader = BatchLoader(splits.train, 64, train=True, resolutions=[16], mean=info["mean"], std=info["std"], hflip=info["hflip"])
    finetune(model, loader, 8, lr=0.1, progress=False)
    train_x, _ = _images(splits.train, 16, info)
    recalibrate_bn(model, [(train_x,)], n_images=len(train_x))
    calib = train_x[torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:256]]
    test = _images(splits.test, 16, info)
    return Case("digits", model.eval(), arch, calib, test, "tiny subnet trained 8 epochs on digits; INT8 ranges from 256 training images")


CASES = {"cifar": case_cifar, "mbv3": case_mbv3, "digits": case_digits}


def bench_case(case: Case, threads: int, repeats: int, batches: list[int], tmp: Path) -> dict:
    onnx_path = export_onnx(case.model, tmp / f"{case.name}.onnx", case.arch.resolution)
    parity = check_parity(onnx_path, case.model, case.calibration[:64], threads=threads)
    int8_path = quantize_int8(onnx_path, tmp / f"{case.name}.int8.onnx", case.calibration)
    fp32, int8 = ort_session(onnx_path, threads), ort_session(int8_path, threads)
    row: dict = {
        "case": case.name, "arch": case.arch.key(), "resolution": case.arch.resolution, "note": case.note,
        "onnx_parity": parity.to_dict(), "size_bytes": {"onnx": onnx_path.stat().st_size, "int8": int8_path.stat().st_size},
        "latency": {},
    }
    for batch in batches:
        x = case.calibration[:1].expand(batch, -1, -1, -1).contiguous()
        xn = x.numpy()

        def torch_run(x=x):
            with torch.inference_mode():
                case.model(x)

        stats = time_interleaved({
            "torch": torch_run,
            "ort_fp32": lambda xn=xn: fp32.run([OUTPUT_NAME], {INPUT_NAME: xn}),
            "ort_int8": lambda xn=xn: int8.run([OUTPUT_NAME], {INPUT_NAME: xn}),
        }, repeats=repeats, warmup=10)
        row["latency"][f"batch{batch}"] = {
            **{k: v.to_dict() for k, v in stats.items()},
            "fp32_vs_torch": stats["torch"].median_ms / stats["ort_fp32"].median_ms,
            "int8_vs_fp32": stats["ort_fp32"].median_ms / stats["ort_int8"].median_ms,
        }
    if case.test is not None:
        x, y = case.test
        with torch.inference_mode():
            torch_top1 = float((case.model(x).argmax(1) == y).float().mean())
        fp32_top1 = float((ort_logits(fp32, x).argmax(1) == y.numpy()).mean())
        int8_top1 = float((ort_logits(int8, x).argmax(1) == y.numpy()).mean())
        row["accuracy"] = {"n": len(y), "torch": torch_top1, "ort_fp32": fp32_top1, "ort_int8": int8_top1,
                           "int8_drop_points": (fp32_top1 - int8_top1) * 100}
    return row


def bench_cuda(case: Case, repeats: int) -> dict:
    """torch-cuda vs ORT CUDA execution provider at batch 1 and 64 (skipped without a GPU)."""
    import onnxruntime as ort

    if not torch.cuda.is_available() or "CUDAExecutionProvider" not in ort.get_available_providers():
        return {"skipped": "needs a CUDA GPU and onnxruntime-gpu (CUDAExecutionProvider)"}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(case.model, Path(tmp) / "m.onnx", case.arch.resolution)
        session = ort_session(path, providers=["CUDAExecutionProvider"])
        model = case.model.cuda()
        out = {}
        for batch in (1, 64):
            x = torch.randn(batch, 3, case.arch.resolution, case.arch.resolution)
            xc, xn = x.cuda(), x.numpy()

            def torch_cuda():
                with torch.inference_mode():
                    model(xc)
                torch.cuda.synchronize()

            stats = time_interleaved({"torch_cuda": torch_cuda, "ort_cuda": lambda: session.run([OUTPUT_NAME], {INPUT_NAME: xn})}, repeats)
            out[f"batch{batch}"] = {k: v.to_dict() for k, v in stats.items()}
        case.model.cpu()
        return {"device": torch.cuda.get_device_name(), **out, "note": "ORT timing includes host-to-device copies of the input"}


def print_table(rows: list[dict]) -> None:
    print(f"{'case':8} {'batch':>5} {'torch ms':>9} {'ORT fp32':>9} {'ORT int8':>9} {'fp32/torch':>10} {'int8/fp32':>9}  accuracy (fp32 -> int8)")
    for row in rows:
        for key, lat in row["latency"].items():
            acc = row.get("accuracy")
            acc_text = f"{acc['ort_fp32']:.2%} -> {acc['ort_int8']:.2%} ({-acc['int8_drop_points']:+.2f} pt)" if acc else "n/a (untrained)"
            print(f"{row['case']:8} {key[5:]:>5} {lat['torch']['median_ms']:9.3f} {lat['ort_fp32']['median_ms']:9.3f} "
                  f"{lat['ort_int8']['median_ms']:9.3f} {lat['fp32_vs_torch']:9.2f}x {lat['int8_vs_fp32']:8.2f}x  {acc_text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=100, help="interleaved timed calls per runner (default 100)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cuda", action="store_true", help="also time torch-cuda vs ORT CUDA EP on the mbv3 case")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--cifar-supernet", type=Path, help="trained cifar supernet directory: the cifar case gets test accuracy")
    parser.add_argument("--cifar-arch", type=Path, help="arch JSON of that supernet (e.g. a chosen.json of ofa-specialize)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows, cuda = [], None
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        for name in args.cases:
            case = case_cifar(args.seed, args.cifar_supernet, args.cifar_arch) if name == "cifar" else CASES[name](args.seed)
            rows.append(bench_case(case, args.threads, args.repeats, args.batches, Path(tmp)))
            if args.cuda and name == "mbv3":
                cuda = bench_cuda(case, args.repeats)
    print_table(rows)
    goals = {}
    for row in rows:
        b1 = row["latency"].get("batch1")
        if b1:
            goals[f"{row['case']}: ORT fp32 >= 1.5x torch"] = b1["fp32_vs_torch"] >= 1.5
            goals[f"{row['case']}: ORT int8 >= 1.3x fp32"] = b1["int8_vs_fp32"] >= 1.3
        if "accuracy" in row:
            goals[f"{row['case']}: int8 drop <= 1 point"] = row["accuracy"]["int8_drop_points"] <= 1.0
    for goal, ok in goals.items():
        print(f"{'PASS' if ok else 'MISS'}  {goal} (batch 1)")
    import onnxruntime

    result = {
        "benchmark": "bench_export",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "load_avg": os.getloadavg()},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "threads": args.threads, "repeats": args.repeats, "seed": args.seed,
        "cases": rows, "goals": goals, "cuda": cuda,
    }
    atomic_write_json(args.output, result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
