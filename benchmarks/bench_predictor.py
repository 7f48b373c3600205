"""Accuracy-predictor benchmark: held-out rank correlation against the number of samples, and predict speed.

Goals (predictor issue):
  * held-out Kendall tau >= 0.8 with at most 1,000 samples;
  * MLP `predict_codes` >= 1,000,000 archs/s on 2 cores (batched, from codes).

Steps:
  1. a supernet: `--supernet DIR` (e.g. work/supernet from `ofa train`), or, when none is given, a `tiny`
     supernet trained here on `--data` (default digits) for `--train-seconds` with a sandwich loop
     (max, min and two random subnets per step), so subnets have real, different accuracies;
  2. `--n-total` stratified samples collected with `predictors.collect` (BN re-calibration and top-1 on
     the validation split), timing each;
  3. a fixed test portion (`--n-test` samples) is held out; each candidate is fitted on the first
     100/250/500/1000 of the remaining samples and scored on the test portion (RMSE, Kendall tau,
     Spearman), beside the MACs-only baseline (rank by MACs) on the same test portion; with `--folds`,
     the k-fold (mean - std tau) choice at each size is reported too;
  4. predict throughput of each model kind on 1,000,000 random codes (median of `--repeats`).

    python benchmarks/bench_predictor.py                       # digits + tiny supernet, ~15-25 min on 2 cores
    python benchmarks/bench_predictor.py --quick               # smoke run
    python benchmarks/bench_predictor.py --supernet work/supernet --data cifar10:/work/shared/data/cifar10-jpeg.tar.gz

Results: a table on stdout and benchmarks/results/bench_predictor.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ofa.data import BatchLoader, load_dataset
from ofa.io import atomic_write_json
from ofa.space import SearchSpace
from ofa.supernet import Supernet
from predictors import AccuracyPredictor, Encoding, read_samples
from predictors.collect import collect_samples
from predictors.models import CANDIDATES, make_candidate
from predictors.select import choose, held_out_metrics, kfold_scores

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "bench_predictor.json"


def train_tiny(splits, seconds: float, seed: int, progress: bool) -> tuple[Supernet, dict]:
    """A `tiny` supernet trained by a plain sandwich loop for a wall-clock budget."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    space = SearchSpace.preset("tiny")
    net = Supernet(space, n_classes=splits.num_classes)
    net.metadata["data"] = {"source": "bench", "mean": list(splits.info["mean"]), "std": list(splits.info["std"]),
                            "hflip": bool(splits.info["hflip"])}
    loader = BatchLoader(splits.train, 64, train=True, resolutions=space.resolutions, seed=seed,
                         mean=splits.info["mean"], std=splits.info["std"], hflip=splits.info["hflip"])
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    start, steps, epoch = time.perf_counter(), 0, 0
    bar = tqdm(desc="train tiny supernet", unit="step", disable=not progress)
    net.train()
    while time.perf_counter() - start < seconds:
        loader.set_epoch(epoch)
        for x, y, _ in loader:
            optimizer.zero_grad(set_to_none=True)
            for arch in [space.max_arch(), space.min_arch(), *space.sample_many(rng, 2)]:
                net.set_active(arch)
                F.cross_entropy(net(x), y).backward()
            optimizer.step()
            steps += 1
            bar.update(1)
            if time.perf_counter() - start >= seconds:
                break
        epoch += 1
    bar.close()
    net.eval()
    return net, {"steps": steps, "epochs": epoch, "seconds": round(time.perf_counter() - start, 1), "sandwich": "max, min, 2 random"}


def throughput(predictor: AccuracyPredictor, n: int, repeats: int, seed: int) -> dict:
    """Archs/s of `predict_codes` on `n` random codes, median over `repeats` runs (plus the encoding alone)."""
    space, enc = predictor.space, predictor.encoding
    rng = np.random.default_rng(seed)
    highs = [len(space.kernel_sizes)] * space.n_slots + [len(space.expand_ratios)] * space.n_slots
    highs += [len(space.depths)] * space.n_stages + [len(space.resolutions)]
    codes = np.stack([rng.integers(0, h, size=n) for h in highs], axis=1)
    predictor.predict_codes(codes[:1000])  # warm-up
    runs, feats = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # batched prediction uses every core
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.predict_codes(codes)
        runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        for s in range(0, n, 65536):
            enc.features(codes[s : s + 65536])
        feats.append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    return {"n": n, "threads": os.cpu_count() or 1, "archs_per_s": n / statistics.median(runs), "features_only_archs_per_s": n / statistics.median(feats),
            "seconds": [round(r, 3) for r in runs]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--supernet", default=None, help="trained supernet directory (default: train a tiny one here)")
    ap.add_argument("--data", default="digits", help="dataset spec (default: %(default)s)")
    ap.add_argument("--val-size", type=int, default=500, help="validation images carved from train (default: %(default)s)")
    ap.add_argument("--work", default="/tmp/ofa-bench-predictor", help="scratch directory (supernet, samples)")
    ap.add_argument("--train-seconds", type=float, default=240)
    ap.add_argument("--n-total", type=int, default=1250)
    ap.add_argument("--n-test", type=int, default=250)
    ap.add_argument("--sizes", default="100,250,500,1000")
    ap.add_argument("--n-calib", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--models", default=",".join(CANDIDATES))
    ap.add_argument("--folds", type=int, default=5, help="k-fold selection at each size (0: skip)")
    ap.add_argument("--throughput-n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main process (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = ap.parse_args()
    if args.quick:
        args.train_seconds, args.n_total, args.n_test, args.sizes = 20, 60, 20, "20,40"
        args.throughput_n, args.repeats, args.folds = min(args.throughput_n, 100_000), 1, 3
    sizes = [int(s) for s in args.sizes.split(",")]
    models = args.models.split(",")
    progress = not args.quiet
    work = Path(args.work)
    torch.set_num_threads(args.threads)  # tiny networks: one thread is fastest, far faster on a busy machine

    splits = load_dataset(args.data, val_size=args.val_size, progress=progress)
    if args.supernet:
        net = Supernet.load(args.supernet)
        supernet_desc = {"source": args.supernet, "space": net.space.name}
    else:
        cached = work / f"supernet-{args.data.split(':')[0]}-{int(args.train_seconds)}s-seed{args.seed}"
        if (cached / "supernet.json").is_file():
            net = Supernet.load(cached)
            info = net.metadata["bench_training"]
        else:
            net, info = train_tiny(splits, args.train_seconds, args.seed, progress)
            net.metadata["bench_training"] = info
            net.save(cached)
        supernet_desc = {"source": f"tiny supernet trained here on {args.data} (val {len(splits.val)} images held out)",
                         "space": "tiny", "training": info, "checkpoint": str(cached)}

    samples_path = work / f"samples-{net.space.name}-{args.data.split(':')[0]}-seed{args.seed}.jsonl"
    start = time.perf_counter()
    result = collect_samples(net, splits, samples_path, n=args.n_total, data=args.data, seed=args.seed, n_calib=args.n_calib,
                             workers=args.workers, progress=progress)
    collect_wall = time.perf_counter() - start
    sf = read_samples(samples_path)
    samples = list(sf.samples)[: args.n_total]
    per_sample = [s.seconds for s in samples]

    space = sf.space
    X = Encoding.for_space(space).features(space.encode([s.arch for s in samples]))
    y = np.array([s.top1 for s in samples])
    macs = np.array([s.macs for s in samples], dtype=float)
    perm = np.random.default_rng(args.seed).permutation(len(samples))
    test, pool = perm[: args.n_test], perm[args.n_test :]
    baseline = held_out_metrics(y[test], np.log(macs[test]))
    rows = []
    for size in sizes:
        if size > len(pool):
            print(f"skipping size {size}: only {len(pool)} samples outside the test portion", file=sys.stderr)
            continue
        idx = pool[:size]
        scores = []
        for name in models:
            t = time.perf_counter()
            model = make_candidate(name, args.seed).fit(X[idx], y[idx])
            fit_s = time.perf_counter() - t
            m = held_out_metrics(y[test], model.predict(X[test]))
            row = {"n_samples": size, "model": name, "kendall_tau": m.kendall_tau, "spearman": m.spearman, "rmse_pct": m.rmse * 100,
                   "fit_seconds": round(fit_s, 2)}
            if args.folds >= 2:
                fs = kfold_scores(lambda: make_candidate(name, args.seed), X[idx], y[idx], args.folds, args.seed)
                scores.append(fs)
                row.update(kfold_tau_mean=fs.mean, kfold_tau_std=fs.std)
            rows.append(row)
            if progress:
                print(f"n={size:5d} {name:18s} tau {m.kendall_tau:.3f} spearman {m.spearman:.3f} rmse {m.rmse * 100:.2f} pts ({fit_s:.1f} s)", file=sys.stderr)
        if scores:
            chosen = choose(scores).name
            for row in rows:
                if row["n_samples"] == size:
                    row["chosen_by_kfold"] = row["model"] == chosen

    speed = {}
    for name in ("mlp", "ridge"):
        model = make_candidate(name, args.seed, mlp_steps=10).fit(X[pool[:100]], y[pool[:100]])
        speed[name] = throughput(AccuracyPredictor(space, model), args.throughput_n, args.repeats, args.seed)

    # ------------------------------------------------------------------ report
    print(f"\nsupernet: {supernet_desc['source']}; {len(samples)} samples, test portion {len(test)} (fixed), "
          f"measured top-1 {y.min() * 100:.1f}..{y.max() * 100:.1f}% (std {y.std() * 100:.2f} pts)")
    print(f"collection: median {statistics.median(per_sample):.3f} s/sample per worker, {args.workers} workers, "
          f"wall {collect_wall:.0f} s for {result.added} new samples")
    print(f"MACs-only baseline on the test portion: tau {baseline.kendall_tau:.3f}, spearman {baseline.spearman:.3f}\n")
    print(f"{'n':>5} {'model':18} {'tau':>6} {'spear':>6} {'rmse%':>6} {'kfold':>12} {'chosen':>6}")
    for r in rows:
        kf = f"{r['kfold_tau_mean']:.3f}±{r['kfold_tau_std']:.3f}" if "kfold_tau_mean" in r else "-"
        print(f"{r['n_samples']:5d} {r['model']:18} {r['kendall_tau']:6.3f} {r['spearman']:6.3f} {r['rmse_pct']:6.2f} {kf:>12} "
              f"{'*' if r.get('chosen_by_kfold') else '':>6}")
    print()
    for name, s in speed.items():
        print(f"predict_codes {name:6s}: {s['archs_per_s'] / 1e6:.3f} M archs/s (encoding alone {s['features_only_archs_per_s'] / 1e6:.2f} M/s), "
              f"n={s['n']}, median of {args.repeats}")
    best_1000 = max((r["kendall_tau"] for r in rows if r["n_samples"] <= 1000), default=float("nan"))
    chosen_tau = [r["kendall_tau"] for r in rows if r.get("chosen_by_kfold") and r["n_samples"] == max(s for s in sizes if s <= len(pool))]
    goal_tau = (chosen_tau[0] if chosen_tau else best_1000) >= 0.8
    goal_speed = speed["mlp"]["archs_per_s"] >= 1_000_000
    print(f"goal held-out tau >= 0.8 (k-fold choice at the largest size): {'MET' if goal_tau else 'NOT MET'}; "
          f"goal MLP >= 1M archs/s: {'MET' if goal_speed else 'NOT MET'}")
    atomic_write_json(args.output, {
        "benchmark": "bench_predictor",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.is_available()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "supernet": supernet_desc,
        "data": args.data, "val_images": len(splits.val), "n_calib": args.n_calib,
        "n_samples": len(samples), "n_test": len(test),
        "measured_top1": {"min": float(y.min()), "max": float(y.max()), "std": float(y.std())},
        "collection": {"median_seconds_per_sample": statistics.median(per_sample), "workers": args.workers,
                       "wall_seconds": round(collect_wall, 1), "added": result.added},
        "macs_baseline": {"kendall_tau": baseline.kendall_tau, "spearman": baseline.spearman},
        "rows": rows,
        "throughput": speed,
        "goals": {"held_out_tau_ge_0.8": goal_tau, "mlp_ge_1M_archs_per_s": goal_speed},
    })
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
