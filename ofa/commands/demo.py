"""`ofa demo`: the whole chain on bundled data, through the same commands a user runs.

train (progressive shrinking) -> latency table for this CPU (build, calibrate, validate) ->
predictor (collect, fit) -> ofa-specialize under a feasible latency budget, verified -> export
(PyTorch, ONNX, ONNX Runtime INT8) -> one summary.  Every step skips or resumes what a previous
run already finished, so re-running continues instead of starting over.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Sequence

from ofa.cli import add_common
from ofa.errors import OfaError
from ofa.units import format_count, format_ms

log = logging.getLogger("ofa")

DEVICE = "this-cpu"
SPECIALIZED = "demo"

# (train overrides, predictor samples, search pop, search generations, latency validation nets)
PROFILES = {
    "full": (["teacher.epochs=30", "kernel.epochs=10", "depth1.epochs=4", "depth2.epochs=10", "expand1.epochs=4", "expand2.epochs=10"], 150, 60, 40, 40),
    "quick": (["teacher.epochs=3", "kernel.epochs=1", "depth1.epochs=1", "depth2.epochs=1", "expand1.epochs=1", "expand2.epochs=1"], 40, 24, 8, 12),
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the whole chain (train, latency, predictor, specialize, export) on bundled digits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work", default="demo-work", help="work directory (default: %(default)s)")
    parser.add_argument("--data", default="digits", help="dataset (default: %(default)s, bundled with scikit-learn)")
    parser.add_argument("--space", default="tiny", help="search space (default: %(default)s)")
    parser.add_argument("--profile", default="full", choices=sorted(PROFILES), help="full (~10 min on 2 cores) or quick (tests)")
    parser.add_argument("--seed", type=int, default=0)
    add_common(parser)
    parser.set_defaults(func=_run)


def _step(name: str, argv: Sequence[str], quiet: bool) -> None:
    """Run one `ofa` command in this process; a failure stops the demo with the step's name."""
    from ofa.cli import main

    argv = [*argv, "-q"] if quiet else list(argv)
    log.info("\n== %s: ofa %s", name, " ".join(argv))
    code = main(argv)
    if code != 0:
        raise OfaError(f"demo step '{name}' failed (exit {code}); fix the error above and re-run `ofa demo` to resume")


def _latency_budget_ms(work: Path) -> float:
    """A budget between the fastest and slowest subnet, so the search has a real trade-off."""
    from latency import LatencyTable
    from ofa.supernet import Supernet

    space = Supernet.load(work / "supernet").space
    table = LatencyTable.load(work / "latency" / f"{DEVICE}.json")
    lo, hi = table.predict([space.min_arch(), space.max_arch()])
    return float(lo + 0.4 * (hi - lo))


def _run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    quiet = bool(args.quiet)
    overrides, n_samples, pop, generations, n_validate = PROFILES[args.profile]
    started = time.perf_counter()
    data = ["--data", args.data]

    train = ["train", "--space", args.space, *data, "--schedule", "smoke", "--set", "steps_per_epoch=0", "--set", "eval_images=0",
             "--out", str(work), "--seed", str(args.seed)]
    for item in overrides:
        train += ["--set", item]
    if not (work / "train_report.json").is_file():
        _step("train", train, quiet)

    table = work / "latency" / f"{DEVICE}.json"
    table_info = json.loads(table.read_text()) if table.is_file() else {}
    if not table_info.get("complete", table.is_file()):
        _step("latency build", ["latency", "build", "--space", str(work / "supernet"), "--runtime", "ort-cpu", "--device", DEVICE, "--work", str(work), "--threads", "1", "--clock", "cpu"], quiet)
        table_info = json.loads(table.read_text())
    if not table_info.get("calibration"):
        _step("latency calibrate", ["latency", "calibrate", "--device", DEVICE, "--work", str(work), "--n", "10"], quiet)
    if not json.loads(table.read_text()).get("validation"):
        _step("latency validate", ["latency", "validate", "--device", DEVICE, "--work", str(work), "--n", str(n_validate)], quiet)

    samples = work / "predictor" / "samples.jsonl"
    _step("predictor collect", ["predictor", "collect", "--supernet", str(work / "supernet"), *data, "--n", str(n_samples), "--out", str(samples), "--seed", str(args.seed)], quiet)
    if not (work / "predictor" / "predictor.json").is_file():
        _step("predictor fit", ["predictor", "fit", "--samples", str(samples), "--out", str(work / "predictor"), "--models", "mlp,gp,ridge", "--folds", "3"], quiet)

    chosen = work / "specialized" / SPECIALIZED / "chosen.json"
    if not chosen.is_file():
        budget = _latency_budget_ms(work)
        _step(
            "specialize",
            ["specialize", "--work", str(work), "--device", DEVICE, "--latency", f"{budget:.4f}ms", "--pop", str(pop), "--generations", str(generations),
             "--seed", str(args.seed), "--verify", "--top-k", "3", "--n-calib", "500", "--name", SPECIALIZED],
            quiet,
        )
    export_dir = work / "export" / SPECIALIZED
    if not (export_dir / "export_report.json").is_file():
        _step("export", ["export", "--work", str(work), "--arch", str(chosen), "--formats", "torch,onnx,ort-int8", "--out", str(export_dir)], quiet)

    print(summary(work, time.perf_counter() - started))
    return 0


def summary(work: Path, seconds: float) -> str:
    """One screen: front size, chosen arch with predicted vs measured figures, where everything is."""
    pareto = json.loads((work / "specialized" / SPECIALIZED / "pareto.json").read_text())
    chosen = json.loads((work / "specialized" / SPECIALIZED / "chosen.json").read_text())
    report = json.loads((work / "export" / SPECIALIZED / "export_report.json").read_text())
    table = json.loads((work / "latency" / f"{DEVICE}.json").read_text())
    metrics = chosen.get("metrics", {})
    verified = chosen.get("verified") or {}
    lines = [
        "",
        "== ofa demo: summary",
        f"Pareto front: {len(pareto['archs'])} subnets ({pareto['algorithm']}, objectives {', '.join(pareto['objectives'])})",
        f"chosen arch:  {chosen['arch']['key']}",
    ]
    acc_pred = metrics.get("accuracy")
    lat_pred = metrics.get(f"latency:{DEVICE}", metrics.get("latency"))
    if acc_pred is not None:
        measured = verified.get("measured_top1")
        lines.append(f"  accuracy:   predicted {100 * acc_pred:.2f}%" + (f", measured {100 * measured:.2f}% (test split)" if measured is not None else ""))
    if lat_pred is not None:
        measured = (verified.get("measured_latency_ms") or {}).get(DEVICE)
        lines.append(f"  latency:    predicted {format_ms(lat_pred)}" + (f", measured {format_ms(measured)}" if measured is not None else "") + f" on {DEVICE}")
    if "params" in metrics:
        lines.append(f"  size:       {format_count(metrics['params'])} params")
    validation = (table.get("validation") or {}).get("calibrated")
    if validation:
        lines.append(
            f"latency table: {len(table.get('entries', {}))} entries; validated on {validation['n']} held-out subnets: "
            f"{100 * validation['within_5']:.0f}% within ±5%, {100 * validation['within_10']:.0f}% within ±10%, Kendall tau {validation['kendall_tau']:.2f}"
        )
    for row in report.get("results", []):
        lines.append(f"  export {row['format']:<9} {row.get('file') or '':<40} {row.get('size_bytes', 0) / 1e3:8.1f} kB")
    lines += [
        "artifacts:",
        f"  supernet    {work / 'supernet'}",
        f"  latency     {work / 'latency' / (DEVICE + '.json')}",
        f"  predictor   {work / 'predictor'}",
        f"  specialized {work / 'specialized' / SPECIALIZED}",
        f"  export      {work / 'export' / SPECIALIZED}",
        f"done in {seconds:.0f} s",
    ]
    return "\n".join(lines)
