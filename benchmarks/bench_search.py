"""Search benchmark: NSGA-II vs random vs evolution at equal evaluations, and vs the reference EvolutionFinder.

    python benchmarks/bench_search.py [--seeds 5] [--ref-generations 500] [--no-reference]

On ofa-mbv3-w1.0 with a latency table and an MLP accuracy predictor, 3 objectives (accuracy,
latency, params) and 2 constraints (latency, params):
- wall time of NSGA-II, population 100 x 100 generations (goal <= 3 s on 2 cores);
- hypervolume (pymoo's HV, objectives scaled to a fixed ideal/nadir, reference point 1.1) of the
  Pareto fronts of NSGA-II, random sampling and the reference's evolution run with the same number
  of evaluations, over several seeds (goal: NSGA-II >= both);
- duplicate rate (evaluations spent on an arch already evaluated in the run);
- evaluations/s of our evolution and NSGA-II vs once-for-all's own `EvolutionFinder` (population
  100, 500 generations, one latency constraint), run in its own virtual environment in the same
  session (goal >= 3x), both on the reference's tutorial setup: the w1.2 space, the published Note10
  lookup tables (imported with `latency.mit_tables`), an MLP predictor, the latency budget at the
  same quantile of random subnets.  See `_ref_evolution_finder.py` for the reference's side.

For the hypervolume comparison the latency table is synthetic (per-layer values from each layer's MACs, larger kernels costlier
per MAC, plus a per-call overhead) because timing a real table of 4,500 layers takes an hour; the
search's cost does not depend on the numbers.  The predictor is the project's MLP (3 x 400 units,
as the reference's) fitted for a few steps on a synthetic accuracy surface; its cost per
prediction is that of a real one.  Writes benchmarks/results/bench_search.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latency.keys import slot_layer_grid  # noqa: E402
from latency.table import Entry, LatencyTable  # noqa: E402
from ofa.costs import CostModel  # noqa: E402
from ofa.search import (  # noqa: E402
    Constraint, Metric, SubnetProblem, hypervolume, minimum_of, on_subspace, restrict_resolutions, run_evolution, run_nsga2, run_random,
)
from ofa.search.operators import random_codes  # noqa: E402
from ofa.space import SearchSpace  # noqa: E402

NOTE10 = REPO.parent / "shared" / "fixtures" / "mit-ofa-note10" / "tables"  # the fixtures beside the checkout
REF_VENV = Path(os.environ.get("OFA_REF_VENV", Path.home() / ".cache" / "ofa-ref-venv"))


def synthetic_table(space: SearchSpace) -> LatencyTable:
    """A real `LatencyTable` whose per-layer values come from the layer's MACs (see module doc)."""
    cost = CostModel.for_space(space)
    overhead = 0.02
    entries: dict[str, Entry] = {}
    for ri, res in enumerate(space.resolutions):
        fixed, grid = slot_layer_grid(space, res)
        for layer in fixed:
            entries.setdefault(layer.key, Entry(overhead + cost.fixed_macs[ri] * 1.5e-8 / len(fixed), 0.0, 1))
        for slot in range(space.n_slots):
            for ki in range(len(space.kernel_sizes)):
                for ei in range(len(space.expand_ratios)):
                    macs = cost.slot_macs[slot, ki, ei, ri]
                    entries.setdefault(grid[slot][ki][ei].key, Entry(overhead + 0.01 + macs * 1.5e-8 * (1 + 0.25 * ki), 0.0, 1))
    return LatencyTable(space, "synthetic", "ort-cpu", "synthetic", 1, 1, "fp32", space.resolutions, entries, overhead)


def synthetic_predictor(space: SearchSpace, seed: int = 0):
    """The project's MLP predictor, fitted briefly on a smooth synthetic accuracy surface."""
    from predictors import AccuracyPredictor
    from predictors.features import Encoding
    from predictors.models import MlpRegressor

    rng = np.random.default_rng(seed)
    codes = random_codes(space, rng, 3000)
    _, macs = CostModel.for_space(space).count_codes(codes)
    slot_bonus = rng.normal(0, 0.003, size=(space.n_slots, len(space.kernel_sizes)))
    active = codes[:, : space.n_slots]
    y = 0.55 + 0.06 * np.log(macs / 1e8) + slot_bonus[np.arange(space.n_slots), active].sum(axis=1)
    model = MlpRegressor(steps=60, seed=seed).fit(Encoding.for_space(space).features(codes), y)
    return AccuracyPredictor(space, model, {"note": "synthetic surface for benchmarking"})


def build_problem(space: SearchSpace, table: LatencyTable, predictor, latency_ms: float, params: float) -> SubnetProblem:
    cost = CostModel.for_space(space)
    metrics = [
        Metric("accuracy", predictor.predict_codes, maximize=True),
        Metric("latency:synthetic", table.predict_codes, unit="ms"),
        Metric("params", lambda c: cost.count_codes(c)[0]),
        Metric("macs", lambda c: cost.count_codes(c)[1]),
    ]
    return SubnetProblem(
        space, metrics, ["accuracy", "latency:synthetic", "params"],
        [Constraint("latency:synthetic", latency_ms), Constraint("params", params)],
    )


def note10_problem(feasible_fraction: float) -> tuple[SubnetProblem, float]:
    """The reference's tutorial setup in our code: w1.2 space, the published Note10 tables (imported), an MLP predictor.

    One latency constraint at the same quantile of random subnets as the reference process uses.
    """
    from latency.mit_tables import import_mit_tables

    full = SearchSpace.preset("ofa-mbv3-w1.2")
    table = import_mit_tables(NOTE10, full, device="note10")
    space, res_index = restrict_resolutions(full, table.resolutions)
    predictor = synthetic_predictor(full)
    metrics = [
        on_subspace(Metric("accuracy", predictor.predict_codes, maximize=True), res_index),
        on_subspace(Metric("latency:note10", table.predict_codes, unit="ms"), res_index),
    ]
    sample = metrics[1](random_codes(space, np.random.default_rng(7), 2000))
    budget = float(np.quantile(sample, feasible_fraction))
    return SubnetProblem(space, metrics, ["accuracy", "latency:note10"], [Constraint("latency:note10", budget)]), budget


def run_reference(generations: int, population: int, feasible_fraction: float, seed: int, threads: int) -> dict | None:
    python = REF_VENV / "bin" / "python"
    if not python.exists():
        print(f"reference venv {REF_VENV} missing: run benchmarks/setup_reference_venv.sh (then pip install tqdm pyyaml into it)")
        return None
    import yaml

    luts = {int(p.name.split("_")[0]): yaml.safe_load(p.read_text()) for p in sorted(NOTE10.glob("*_lookup_table.yaml"))}
    cfg = {"luts": luts, "seed": seed, "population": population, "generations": generations,
           "feasible_fraction": feasible_fraction, "threads": threads}
    proc = subprocess.run([str(python), str(REPO / "benchmarks" / "_ref_evolution_finder.py")], input=json.dumps(cfg),
                          capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        print(f"reference run failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pop", type=int, default=100)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--ref-generations", type=int, default=500)
    parser.add_argument("--feasible-fraction", type=float, default=0.3, help="latency budget = this quantile of random subnets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides (default: %(default)s)")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_search.json"))
    args = parser.parse_args()

    import torch

    # small batches (100 archs) run fastest on one thread, and a busy 2-core machine makes 2 threads
    # spin; the reference process gets the same setting
    torch.set_num_threads(args.threads)
    space = SearchSpace.preset("ofa-mbv3-w1.0")
    t0 = time.perf_counter()
    table = synthetic_table(space)
    predictor = synthetic_predictor(space)
    setup_s = time.perf_counter() - t0
    probe = random_codes(space, np.random.default_rng(123), 20000)
    lat, acc = table.predict_codes(probe), predictor.predict_codes(probe)
    params = CostModel.for_space(space).count_codes(probe)[0]
    latency_ms = float(np.quantile(lat, args.feasible_fraction))
    params_budget = float(np.quantile(params, 0.7))
    feasible = (lat <= latency_ms) & (params <= params_budget)
    ideal = np.array([-(acc.max() + 0.05 * np.ptp(acc)), minimum_of(space, table.predict_codes).value, minimum_of(space, lambda c: CostModel.for_space(space).count_codes(c)[0]).value])
    nadir = np.array([-float(np.median(acc[feasible])), latency_ms, params_budget])

    rows: dict[str, list[dict]] = {"nsga2": [], "random": [], "evolution": []}
    for seed in range(args.seeds):
        problem = build_problem(space, table, predictor, latency_ms, params_budget)
        nsga = run_nsga2(problem, args.pop, args.generations, seed)
        n = nsga.n_evaluations
        rand = run_random(build_problem(space, table, predictor, latency_ms, params_budget), n, seed)
        evo = run_evolution(build_problem(space, table, predictor, latency_ms, params_budget), args.pop, 10**6, seed, max_evaluations=n)
        for res in (nsga, rand, evo):
            rows[res.algorithm].append({
                "seed": seed, "seconds": res.seconds, "evaluations": res.n_evaluations, "evaluations_per_s": res.evaluations_per_second,
                "hypervolume": hypervolume(res, ideal, nadir), "front_size": len(res.codes), "duplicate_rate": res.duplicate_rate,
                "best_accuracy": float(res.column("accuracy").max()) if len(res.codes) else None,
            })

    summary = {}
    for name, runs in rows.items():
        summary[name] = {key: statistics.median(r[key] for r in runs) for key in ("seconds", "evaluations", "evaluations_per_s", "hypervolume", "front_size", "duplicate_rate", "best_accuracy")}
        summary[name]["hypervolume_min"] = min(r["hypervolume"] for r in runs)
        summary[name]["hypervolume_max"] = max(r["hypervolume"] for r in runs)
    wins = {other: sum(a["hypervolume"] >= b["hypervolume"] for a, b in zip(rows["nsga2"], rows[other])) for other in ("random", "evolution")}

    # the reference comparison, same setup on both sides: w1.2, Note10 tables, MLP predictor, one latency constraint
    note10, note10_budget = note10_problem(args.feasible_fraction)
    ours_long = run_evolution(note10, args.pop, args.ref_generations, 0)
    note10_nsga = run_nsga2(note10, args.pop, args.generations, 0)
    reference = None if args.no_reference else run_reference(args.ref_generations, args.pop, args.feasible_fraction, 0, args.threads)

    print(f"\nsearch benchmark, ofa-mbv3-w1.0, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {args.seeds} seeds (medians)")
    print(f"budgets: latency <= {latency_ms:.3f} ms (q{args.feasible_fraction:g} of random), params <= {params_budget / 1e6:.2f}M; setup {setup_s:.1f} s")
    print(f"{'algorithm':<12}{'evals':>8}{'time s':>9}{'evals/s':>10}{'HV':>8}{'HV min..max':>16}{'front':>7}{'dup rate':>10}{'best acc':>10}")
    for name, s in summary.items():
        print(f"{name:<12}{s['evaluations']:>8.0f}{s['seconds']:>9.2f}{s['evaluations_per_s']:>10.0f}{s['hypervolume']:>8.4f}"
              f"{s['hypervolume_min']:>8.4f}..{s['hypervolume_max']:<6.4f}{s['front_size']:>7.0f}{s['duplicate_rate']:>10.1%}{s['best_accuracy']:>10.4f}")
    print(f"NSGA-II hypervolume >= random in {wins['random']}/{args.seeds} seeds, >= evolution in {wins['evolution']}/{args.seeds}")
    print(f"\nw1.2 + Note10 tables (imported) + MLP predictor, latency <= {note10_budget:.2f} ms (q{args.feasible_fraction:g}):")
    print(f"ours evolution, pop {args.pop} x {args.ref_generations} gens: {ours_long.n_evaluations} evals in {ours_long.seconds:.2f} s = {ours_long.evaluations_per_second:.0f} evals/s")
    print(f"ours NSGA-II, pop {args.pop} x {args.generations} gens: {note10_nsga.n_evaluations} evals in {note10_nsga.seconds:.2f} s = {note10_nsga.evaluations_per_second:.0f} evals/s")
    ratios = {}
    if reference:
        print(f"reference EvolutionFinder (w1.2, Note10 LUT, MLP predictor), pop {reference['population']} x {reference['generations']} gens: "
              f"{reference['evaluations']} evals in {reference['seconds']:.2f} s = {reference['evaluations_per_s']:.0f} evals/s")
        ratios = {
            "evolution_vs_reference": ours_long.evaluations_per_second / reference["evaluations_per_s"],
            "nsga2_vs_reference": note10_nsga.evaluations_per_second / reference["evaluations_per_s"],
        }
        print(f"evaluations/s ratio: our evolution {ratios['evolution_vs_reference']:.1f}x, our NSGA-II {ratios['nsga2_vs_reference']:.1f}x the reference")

    out = {
        "benchmark": "bench_search",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch_threads": torch.get_num_threads(), "gpu": None},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "space": space.name,
        "setup": {"latency_table": "synthetic per-layer (from MACs)", "predictor": "project MLP 3x400, synthetic surface",
                  "latency_budget_ms": latency_ms, "params_budget": params_budget, "ideal": ideal.tolist(), "nadir": nadir.tolist(),
                  "pop": args.pop, "generations": args.generations},
        "runs": rows,
        "summary": summary,
        "nsga2_hv_wins": wins,
        "note10_budget_ms": note10_budget,
        "ours_evolution_note10": {"seconds": ours_long.seconds, "evaluations": ours_long.n_evaluations, "evaluations_per_s": ours_long.evaluations_per_second,
                                  "generations": args.ref_generations, "population": args.pop},
        "ours_nsga2_note10": {"seconds": note10_nsga.seconds, "evaluations": note10_nsga.n_evaluations, "evaluations_per_s": note10_nsga.evaluations_per_second},
        "reference": reference,
        "ratios": ratios,
        "goals": {"nsga2_100x100_seconds_le_3": summary["nsga2"]["seconds"] <= 3.0,
                  "hv_ge_random_and_evolution": wins["random"] == args.seeds and wins["evolution"] == args.seeds,
                  "evals_per_s_ge_3x_reference": bool(ratios) and ratios["evolution_vs_reference"] >= 3.0},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
