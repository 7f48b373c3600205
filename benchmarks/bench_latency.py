"""Latency tables on ORT CPU: build time, predict throughput, validation (raw, calibrated, MACs proxy).

    python benchmarks/bench_latency.py                 # ofa-mbv3-w1.0, 5 resolutions, 1 and 2 threads
    python benchmarks/bench_latency.py --all-resolutions   # also time the 25-resolution build
    python benchmarks/bench_latency.py --quick         # tiny space, for a smoke run

Prints a table and writes benchmarks/results/latency.json.  Goals (issue 5): 5 resolutions built in
<= 60 s and 25 in <= 300 s on 2 cores; >= 100,000 predictions/s; calibrated validation >= 99% of
held-out networks within ±5% and Kendall tau >= 0.95.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency.build import BuildSettings, build_table, time_networks  # noqa: E402
from latency.calibrate import accuracy_metrics  # noqa: E402
from latency.keys import arch_from_key  # noqa: E402
from latency.runtimes import make_backend  # noqa: E402
from latency.timing import STATISTICS  # noqa: E402
from latency.calibrate import calibrate, calibrate_and_validate, plot_validation, validate  # noqa: E402
from ofa.space import SearchSpace  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def predict_throughput(table, n: int = 200_000, repeats: int = 5) -> dict[str, float]:
    """Archs per second through `predict_codes` (codes drawn directly) and through `predict` (with encoding)."""
    space = table.space
    rng = np.random.default_rng(0)
    s = space.n_slots
    res_idx = np.array([space.resolutions.index(r) for r in table.resolutions])
    codes = np.concatenate(
        [
            rng.integers(0, len(space.kernel_sizes), (n, s)),
            rng.integers(0, len(space.expand_ratios), (n, s)),
            rng.integers(0, len(space.depths), (n, space.n_stages)),
            res_idx[rng.integers(0, len(res_idx), (n, 1))],
        ],
        axis=1,
    )
    table.predict_codes(codes[:10])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        table.predict_codes(codes)
        times.append(time.perf_counter() - t)
    archs = space.decode(codes[:20_000])
    t = time.perf_counter()
    table.predict(archs)
    with_encode = len(archs) / (time.perf_counter() - t)
    return {"codes_per_s": n / float(np.median(times)), "archs_per_s_with_encode": with_encode}


def parse_config(config: str) -> tuple[int, str, str]:
    """`THREADS:CLOCK[:STATISTIC]`, e.g. `1:cpu` or `1:cpu:p10`."""
    parts = config.split(":")
    statistic = parts[2] if len(parts) > 2 else "median"
    if len(parts) not in (2, 3) or not parts[0].isdigit() or parts[1] not in ("wall", "cpu") or statistic not in STATISTICS:
        print(f"bench_latency.py: --configs {config!r} is not THREADS:CLOCK[:STATISTIC], e.g. 1:cpu or 1:cpu:p10", file=sys.stderr)
        raise SystemExit(2)
    return int(parts[0]), parts[1], statistic


def label(run: dict) -> str:
    stat = run.get("statistic", "median")
    return f"{run['threads']}/{run['clock']}" + ("" if stat == "median" else f"/{stat}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="ofa-mbv3-w1.0")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 152, 176, 200, 224])
    parser.add_argument("--configs", nargs="+", default=["1:wall", "1:cpu", "2:wall"], help="THREADS:CLOCK[:STATISTIC] runs; STATISTIC is median (default) or p10 (default: %(default)s)")
    parser.add_argument("--n-calibrate", type=int, default=10)
    parser.add_argument("--n-validate", type=int, default=100)
    parser.add_argument("--time-per-entry", type=float, default=60.0, help="ms per layer (default: %(default)s)")
    parser.add_argument("--time-per-net", type=float, default=300.0, help="ms per network (default: %(default)s)")
    parser.add_argument("--all-resolutions", action="store_true", help="also time a build over all the space's resolutions (first config)")
    parser.add_argument("--only-full-build", action="store_true", help="only time the build over all resolutions (first config)")
    parser.add_argument("--quick", action="store_true", help="tiny space, few networks")
    parser.add_argument(
        "--session", default="one", choices=("one", "separate"),
        help="one: calibration and validation networks timed in the same interleaved rounds (`calibrate --validate`); "
        "separate: `calibrate` then `validate`, as two commands (default: %(default)s)",
    )
    parser.add_argument("--retest", action="store_true", help="time the validation networks again: the measurement noise floor")
    parser.add_argument("--work", default="/tmp/ofa-bench-latency")
    parser.add_argument("--output", default=str(RESULTS / "latency.json"))
    args = parser.parse_args()
    if args.quick:
        args.space, args.resolutions, args.n_validate, args.time_per_net = "tiny", [24], 20, 60.0
    space = SearchSpace.resolve(args.space)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "benchmark": "latency",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()},
        "space": space.name,
        "resolutions": args.resolutions,
        "session": args.session,
        "runs": [],
    }
    args.all_resolutions = args.all_resolutions or args.only_full_build
    for config in [] if args.only_full_build else args.configs:
        threads, clock, statistic = parse_config(config)
        name = f"t{threads}-{clock}" + ("" if statistic == "median" else f"-{statistic}")
        settings = BuildSettings(
            device=f"bench-{name}", threads=threads, clock=clock, resolutions=tuple(args.resolutions),
            time_per_entry_ms=args.time_per_entry, statistic=statistic,
        )
        t = time.perf_counter()
        table = build_table(space, settings, work / f"{name}.json", progress=True, force=True)
        build_s = time.perf_counter() - t
        throughput = predict_throughput(table)
        t = time.perf_counter()
        if args.session == "one":
            table = calibrate_and_validate(table, args.n_calibrate, args.n_validate, time_per_net_ms=args.time_per_net)
        else:
            table = calibrate(table, n=args.n_calibrate, time_per_net_ms=args.time_per_net)
            table = validate(table, n=args.n_validate, time_per_net_ms=args.time_per_net)
        validate_s = time.perf_counter() - t
        table.save(work / f"{name}.json")
        plot_validation(table, work / f"{name}.png")
        v = table.validation
        noise = None
        if args.retest:  # the same networks timed again, in fresh sessions: how well one measurement predicts another
            archs = [arch_from_key(space, k) for k in v["archs"]]
            with make_backend("ort-cpu", threads, clock=clock) as backend:
                again = time_networks(space, archs, backend, 1, args.time_per_net, 5, True, table.statistic)
            noise = accuracy_metrics(again, np.asarray(v["measured_ms"]))
        report["runs"].append(
            {
                "threads": threads, "clock": clock, "statistic": statistic, "entries": len(table.entries), "build_s": build_s, "calibrate_validate_s": validate_s,
                "call_overhead_ms": table.call_overhead_ms, "calibration": {key: val for key, val in table.calibration.to_dict().items() if key not in ("archs", "raw_ms", "measured_ms")},
                **throughput, "raw": v["raw"], "calibrated": v["calibrated"], "macs_proxy": v["macs_proxy"],
                "median_entry_spread_pct": float(np.median([e.spread_ms / e.median_ms * 100 for e in table.entries.values()])),
                "load_avg_after": os.getloadavg(),
                "retest": noise,
            }
        )
    if args.all_resolutions:
        t = time.perf_counter()
        threads, clock, _ = parse_config(args.configs[0])
        settings = BuildSettings(device="bench-all", threads=threads, clock=clock, time_per_entry_ms=args.time_per_entry)
        full = build_table(space, settings, work / "all.json", force=True)
        report["all_resolutions"] = {"threads": threads, "clock": clock, "entries": len(full.entries), "build_s": time.perf_counter() - t, "resolutions": len(space.resolutions)}
    report["machine"]["load_avg_end"] = os.getloadavg()

    print(f"\nlatency tables, {space.name}, resolutions {args.resolutions}, ORT CPU ({report['date']}, load avg {report['machine']['load_avg_start'][0]:.1f})")
    print(f"{'thr/clock':>9} {'entries':>7} {'build s':>8} {'predict/s':>11} {'method':>11} {'MAPE %':>7} {'±5 %':>6} {'±10 %':>6} {'tau':>6} {'rho':>6} {'bias %':>7}")
    for run in report["runs"]:
        for i, name in enumerate(("raw", "calibrated", "macs_proxy", "retest")):
            m = run.get(name)
            if m is None:
                continue
            head = f"{label(run):>9} {run['entries']:>7} {run['build_s']:>8.1f} {run['codes_per_s']:>11.3g}" if i == 0 else " " * 38
            print(
                f"{head} {name:>11} {m['mape']:>7.2f} {m['within_5'] * 100:>6.1f} {m['within_10'] * 100:>6.1f} "
                f"{m['kendall_tau']:>6.3f} {m['spearman']:>6.3f} {m['bias_pct']:>+7.2f}"
            )
    if "all_resolutions" in report:
        a = report["all_resolutions"]
        print(f"all {a['resolutions']} resolutions, {a['threads']} thread(s), {a['clock']} clock: {a['entries']} entries in {a['build_s']:.1f} s")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
