"""Training benchmarks for `ofa train`.

    python benchmarks/bench_train.py throughput            # ~2 min: images/s per phase, supernet vs static
    python benchmarks/bench_train.py cifar --data cifar10:../shared/data/cifar10-jpeg.tar.gz --static-minutes match
        # hours on 2 cores: cifar-cpu progressive vs uniform, inherited vs from-scratch accuracy, Kendall tau,
        # and a static MobileNetV3-small trained for the same time.  Runs and results already in --work are reused;
        # --set overrides cut the schedule for every run alike; --scratch 0 skips from-scratch training;
        # --time-match gives uniform/sandwich the minutes the progressive run took (not its subnet passes).

Prints a table and writes benchmarks/results/bench_train_<mode>.json.  Timings are medians of
interleaved repeats (the machine is shared and noisy); ratios are measured side by side.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ofa.io import atomic_write_json  # noqa: E402
from ofa.space import Arch, SearchSpace  # noqa: E402
from ofa.supernet import Supernet  # noqa: E402
from ofa.train import make_schedule  # noqa: E402
from ofa.train.distill import subnet_loss  # noqa: E402
from ofa.train.optim import lr_at, make_optimizer  # noqa: E402
from ofa.train.samplers import SubnetSampler  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _machine() -> dict:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------------------------ throughput
def throughput(args: argparse.Namespace) -> dict:
    """Training images/s of each phase's step (subnets + teacher forward), and supernet vs static max net."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    space = SearchSpace.preset(args.space)
    res = args.resolution or max(space.resolutions)
    torch.manual_seed(0)
    cl = torch.channels_last  # as `ofa train` runs (oneDNN/cuDNN's fast depthwise kernels)
    net = Supernet(space).to(device, memory_format=cl)
    static = net.extract(space.max_arch()).to(device, memory_format=cl).train()
    teacher = net.extract(space.max_arch()).to(device, memory_format=cl).eval()
    schedule = make_schedule("cifar-cpu")
    sampler = SubnetSampler(space, "progressive", 0)
    x = torch.randn(args.batch, 3, res, res, device=device).contiguous(memory_format=cl)
    y = torch.randint(0, space.n_classes, (args.batch,), device=device)
    opt_net = make_optimizer(net, 0.01, 0.9, 5e-5)
    opt_static = make_optimizer(static, 0.01, 0.9, 5e-5)

    def step_static() -> None:
        opt_static.zero_grad()
        F.cross_entropy(static(x), y).backward()
        opt_static.step()

    def step_phase(index: int, counter=[0]) -> None:  # noqa: B006 - a step counter for fresh subnets
        phase = schedule.phases[index]
        counter[0] += 1
        archs = sampler.sample(index, phase, counter[0], res)
        teacher_logits = None
        if index > 0:
            with torch.no_grad():
                teacher_logits = teacher(x)
        opt_net.zero_grad()
        for arch in archs:
            net.set_active(arch)
            subnet_loss(net(x), y, teacher_logits, 1.0, 0.1).backward()
        opt_net.step()

    jobs = {"static max": step_static, **{f"phase {p.name}": (lambda i=i: step_phase(i)) for i, p in enumerate(schedule.phases)}}
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for fn in jobs.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in jobs.items():  # interleaved, so load changes hit every job alike
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    rows = {name: {"median_s": statistics.median(ts), "images_per_s": args.batch / statistics.median(ts)} for name, ts in times.items()}
    ratio = rows["static max"]["median_s"] / rows["phase teacher"]["median_s"]
    per_epoch = {name: 45000 / r["images_per_s"] for name, r in rows.items()}
    budget = sum(p.epochs * per_epoch[f"phase {p.name}"] for p in schedule.phases)
    result = {
        "benchmark": "train throughput", "machine": _machine(), "device": str(device), "space": space.name,
        "resolution": res, "batch": args.batch, "repeats": args.repeats, "rows": rows,
        "supernet_vs_static_max_ratio": ratio,
        "cifar_cpu_estimated_minutes_45k_images": budget / 60,
        "command": " ".join(sys.argv),
    }
    print(f"{'step':<18}{'median s':>10}{'images/s':>10}")
    for name, r in rows.items():
        print(f"{name:<18}{r['median_s']:>10.3f}{r['images_per_s']:>10.1f}")
    print(f"supernet (max, teacher phase) / static max throughput: {ratio:.3f}")
    print(f"cifar-cpu schedule estimate on 45k train images: {budget / 60:.1f} min (training steps only)")
    return result


# ------------------------------------------------------------------------------------ cifar accuracy
def _run_train(out: Path, data: str, sampler: str, extra: list[str], seed: int = 0) -> None:
    """`ofa train` into `out`; a finished run there (its train_report.json says complete) is reused."""
    report = out / "train_report.json"
    if report.is_file() and json.loads(report.read_text()).get("complete") and (out / "supernet").is_dir():
        print(f"reusing the finished run in {out}")
        return
    _train(out, data, sampler, extra, seed)


def _train(out: Path, data: str, sampler: str, extra: list[str], seed: int = 0) -> None:
    """`ofa train` of the cifar space with the cifar-cpu schedule (re-running it resumes)."""
    cmd = [sys.executable, "-m", "ofa", "train", "--space", "cifar", "--data", data, "--schedule", "cifar-cpu",
           "--sampler", sampler, "--out", str(out), "--seed", str(seed), "-q", *extra]
    subprocess.run(cmd, check=True, cwd=ROOT)


def _probe_images_per_s(work: Path, data: str, sampler: str, extra: list[str]) -> float:
    """Training images/s of `sampler` from a short run (150 steps; 30 steps under-read the uniform sampler by 25%, start-up included)."""
    out = work / f"probe-{sampler}"
    _train(out, data, sampler, [*extra, "--force", "--set", f"{sampler}.epochs=1", "--set", "epoch_scale=1", "--set", "steps_per_epoch=150",
                                "--set", "eval_images=200", "--set", "calib_images=200"])
    phases = json.loads((out / "train_report.json").read_text())["phases"]
    return float(phases[sampler]["images_per_s"])


def _time_matched_epochs(work: Path, data: str, reference: str, sampler: str, extra: list[str], epoch_scale: float) -> float:
    """Epochs of `sampler`'s single phase that fill the training seconds the `reference` run took.

    Returned in the schedule's own units: the run multiplies them by its `epoch_scale` again.
    """
    report = json.loads((work / reference / "train_report.json").read_text())
    seconds = sum(p["seconds"] for p in report["phases"].values())
    first = next(iter(report["phases"].values()))
    images_per_epoch = first["steps"] / first["epochs"] * report["schedule"]["batch_size"] * report["world_size"]
    rate = _probe_images_per_s(work, data, sampler, extra)
    epochs = seconds * rate / images_per_epoch
    print(f"{sampler}: {rate:.0f} images/s in a probe, {epochs:.2f} epochs fill {reference}'s {seconds / 60:.1f} min")
    return round(epochs / epoch_scale, 3)


def _inherited(supernet_dir: Path, archs: list[Arch], splits) -> list[float]:
    from ofa.evaluate import evaluate_arch

    net = Supernet.load(supernet_dir)
    return [evaluate_arch(net, a, splits.val, splits.test).top1 for a in archs]


def _train_loop(net: torch.nn.Module, loader, total: int, lr: float, warmup: int, weight_decay: float, schedule: str = "cosine",
                desc: str = "train") -> None:
    """SGD Nesterov with label smoothing, `total` steps of cosine-with-warm-up or one-cycle LR."""
    from tqdm import tqdm

    opt = make_optimizer(net, lr, 0.9, weight_decay)
    bar = tqdm(total=total, desc=desc, unit="step", mininterval=2.0)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total) if schedule == "onecycle" else None
    step = 0
    net.train()
    while step < total:
        loader.set_epoch(step // len(loader))
        for x, y, _ in loader:
            if step >= total:
                break
            if onecycle is None:
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, lr, warmup)
            opt.zero_grad()
            subnet_loss(net(x.contiguous(memory_format=torch.channels_last)), y, None, 0.0, 0.1).backward()
            opt.step()
            if onecycle is not None:
                onecycle.step()
            step += 1
            bar.update()
    bar.close()


def _test_top1(net: torch.nn.Module, splits, resolution: int) -> float:
    from ofa.data import BatchLoader
    from ofa.evaluate import evaluate

    info = splits.info
    return evaluate(net.eval(), BatchLoader(splits.test, 200, train=False, resolutions=[resolution], mean=info["mean"], std=info["std"])).top1


def _scratch(space: SearchSpace, arch: Arch, splits, epochs: float, batch: int, lr: float, weight_decay: float, seed: int) -> float:
    """The static subnet trained alone: SGD Nesterov, cosine with warm-up, label smoothing, crop+flip."""
    from ofa.data import BatchLoader
    from ofa.layers import build_static

    torch.manual_seed(seed)
    net = build_static(space.with_classes(splits.num_classes), arch).to(memory_format=torch.channels_last)
    info = splits.info
    loader = BatchLoader(splits.train, batch, train=True, resolutions=[arch.resolution], seed=seed, mean=info["mean"], std=info["std"], hflip=info["hflip"])
    _train_loop(net, loader, int(math.ceil(epochs * len(loader))), lr, len(loader) // 3, weight_decay, desc=f"scratch {arch}")
    return _test_top1(net, splits, arch.resolution)


def _static_baseline(splits, minutes: float, batch: int, weight_decay: float, seed: int) -> dict:
    """torchvision MobileNetV3-small (stem stride 1) trained alone for `minutes` of wall time.

    The issue's time-matched reference point: one static network, one-cycle LR, crop + flip, label
    smoothing 0.1.  The epoch count that fits the budget comes from the throughput of 16 timed steps
    after 4 untimed ones (the first steps build kernels and would undercount the budget).
    """
    from torchvision.models import mobilenet_v3_small

    from ofa.data import BatchLoader

    torch.manual_seed(seed)
    net = mobilenet_v3_small(num_classes=splits.num_classes)
    net.features[0][0].stride = (1, 1)
    net = net.to(memory_format=torch.channels_last)
    info = splits.info
    loader = BatchLoader(splits.train, batch, train=True, resolutions=[32], seed=seed, mean=info["mean"], std=info["std"], hflip=info["hflip"])
    probe = torch.optim.SGD(net.parameters(), lr=0.0)
    batches = iter(loader)
    for i in range(20):
        if i == 4:
            t = time.perf_counter()
        x, y, _ = next(batches)
        probe.zero_grad()
        F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y).backward()
        probe.step()
    step_s = (time.perf_counter() - t) / 16
    total = int(minutes * 60 / step_s)
    t = time.perf_counter()
    _train_loop(net, loader, total, 0.2, 0, weight_decay, schedule="onecycle", desc="static MobileNetV3-small")
    return {
        "model": "torchvision mobilenet_v3_small, stem stride 1, 32 px", "params": sum(p.numel() for p in net.parameters()),
        "epochs": total / len(loader), "minutes": (time.perf_counter() - t) / 60, "top1": _test_top1(net, splits, 32),
    }


def _cached(path: Path, key: dict, compute):
    """compute() once per `key`: the result is kept in `path`, so an interrupted benchmark resumes."""
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("key") == key:
            print(f"reusing {path.name}")
            return record["value"]
    value = compute()
    atomic_write_json(path, {"key": key, "value": value})
    return value


def _report_minutes(run_dir: Path) -> float:
    report = json.loads((run_dir / "train_report.json").read_text())
    return sum(p["seconds"] for p in report["phases"].values()) / 60


def cifar(args: argparse.Namespace) -> dict:
    from scipy.stats import kendalltau

    from ofa.data import load_dataset

    space = SearchSpace.preset("cifar")
    work = Path(args.work)
    overrides = [x for o in args.set for x in ("--set", o)]
    schedule = make_schedule("cifar-cpu", overrides=args.set)
    matched: dict[str, float] = {}
    for i, sampler in enumerate(args.samplers):
        extra = list(overrides)
        if args.time_match and i > 0:
            # kept beside the run, so an interrupted run resumes with the same epochs
            record = work / f"{sampler}-time-match.json"
            if not record.is_file():
                atomic_write_json(record, {"epochs": _time_matched_epochs(work, args.data, args.samplers[0], sampler, overrides, schedule.epoch_scale)})
            matched[sampler] = json.loads(record.read_text())["epochs"]
            extra += ["--set", f"{sampler}.epochs={matched[sampler]}"]
        _run_train(work / sampler, args.data, sampler, extra, args.seed)
    splits = load_dataset(args.data)
    mid = Arch((5,) * space.n_slots, (4.0,) * space.n_slots, (3,) * space.n_stages, 28)
    named = {"min": space.min_arch(), "mid": mid, "max": space.max_arch()}
    archs = list(named.values()) + space.sample_many(args.seed, max(0, args.n_archs - 3))
    inherited = {s: _inherited(work / s / "supernet", archs if s == args.samplers[0] else archs[:3], splits) for s in args.samplers}
    epochs = schedule.total_epochs
    # The baselines train with the schedule's weight decay (recorded results before 2026-12-08 used 5e-5).
    decay = schedule.weight_decay
    scratch = [_cached(work / f"scratch-{i}.json", {"arch": str(a), "epochs": epochs, "seed": args.seed, "weight_decay": decay},
                       lambda a=a: _scratch(space, a, splits, epochs, 128, 0.15, decay, args.seed))
               for i, a in enumerate(archs[: args.scratch])]
    rows = {
        name: {**{s: inherited[s][i] for s in args.samplers}, "scratch": scratch[i] if i < len(scratch) else None}
        for i, name in enumerate(named)
    }
    tau = float(kendalltau(inherited[args.samplers[0]][: len(scratch)], scratch).statistic) if len(scratch) >= 3 else None
    minutes = {s: _report_minutes(work / s) for s in args.samplers}
    static_minutes = minutes[args.samplers[0]] if args.static_minutes == "match" else args.static_minutes
    static = _cached(work / "static.json", {"minutes": round(static_minutes, 2), "seed": args.seed, "weight_decay": decay},
                     lambda: _static_baseline(splits, static_minutes, 128, decay, args.seed)) if static_minutes > 0 else None
    print(f"{'subnet':<8}" + "".join(f"{s:>13}" for s in args.samplers) + f"{'scratch':>10}")
    for name, r in rows.items():
        cells = "".join(f"{r[s]:>13.4f}" for s in args.samplers)
        print(f"{name:<8}{cells}{r['scratch'] if r['scratch'] is not None else float('nan'):>10.4f}")
    print("training minutes: " + ", ".join(f"{s} {m:.1f}" for s, m in minutes.items()))
    if tau is not None:
        print(f"Kendall tau inherited ({args.samplers[0]}) vs scratch over {len(scratch)} archs: {tau:.3f}")
    if static:
        print(f"static baseline: {static['model']}, {static['epochs']:.1f} epochs in {static['minutes']:.1f} min: {static['top1']:.4f}")
    return {
        "benchmark": "train cifar", "machine": _machine(), "overrides": args.set, "rows": rows, "kendall_tau": tau,
        "n_archs": len(archs), "archs": [str(a) for a in archs], "inherited": inherited, "scratch": scratch,
        "scratch_epochs": epochs, "minutes": minutes, "time_matched_epochs": matched, "static_baseline": static, "command": " ".join(sys.argv),
    }


def _minutes_or_match(text: str) -> float | str:
    """`--static-minutes`: a number of minutes or 'match'."""
    if text == "match":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number of minutes nor 'match'") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--space", default="cifar")
    t.add_argument("--resolution", type=int)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--repeats", type=int, default=7)
    t.add_argument("--cpu", action="store_true", help="stay on the CPU even if a GPU is visible")
    c = sub.add_parser("cifar")
    c.add_argument("--data", required=True)
    c.add_argument("--work", default="bench-work")
    c.add_argument("--n-archs", type=int, default=8, help="archs evaluated from the first sampler's supernet")
    c.add_argument("--samplers", nargs="+", default=["progressive", "uniform"], choices=["progressive", "uniform", "sandwich"])
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="schedule override for every run (repeatable)")
    c.add_argument("--time-match", action="store_true",
                   help="give every later sampler the training minutes the first one took (epochs from a 150-step probe)")
    c.add_argument("--scratch", type=int, default=8, help="how many of the archs to also train from scratch (0: none)")
    c.add_argument("--static-minutes", type=_minutes_or_match, default=0.0,
                   help="also train torchvision MobileNetV3-small for this many minutes ('match': as long as the first sampler's run)")
    c.add_argument("--output", help="JSON to write (default: results/bench_train_cifar.json)")
    c.add_argument("--seed", type=int, default=0, help="training seed of every run and the seed of the sampled archs")
    args = parser.parse_args(argv)
    result = throughput(args) if args.mode == "throughput" else cifar(args)
    suffix = f"_{args.space}" if args.mode == "throughput" and args.space != "cifar" else ""
    output = getattr(args, "output", None) or RESULTS / f"bench_train_{args.mode}{suffix}.json"
    atomic_write_json(output, result)


if __name__ == "__main__":
    main()
