"""`ofa specialize` / `ofa-specialize`: the most accurate subnet within a device's budgets, and its Pareto front.

    ofa-specialize --work work --device jetson --latency 20ms
    ofa-specialize --work work --latency jetson=20ms --latency cpu=40ms --params 5M
    ofa-specialize --work work --space tiny --macs 30M --accuracy-proxy macs

Reads `work/latency/<device>.json` (one table per device), `work/predictor/` (accuracy predictor)
and, for `--verify`, `work/supernet/`; writes `work/specialized/<name>/`.
"""
from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import time
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ofa.cli import UsageError, add_common
from ofa.errors import OfaError
from ofa.search import (
    Constraint, Metric, SearchError, SearchResult, SubnetProblem, minimum_of, on_subspace, restrict_resolutions, run_evolution,
    run_nsga2, run_random,
)
from ofa.search.result import RunInfo, Verified, format_metric, summary_table, write_outputs
from ofa.space import Arch, SearchSpace
from ofa.units import format_count, parse_bytes, parse_count, parse_duration_ms

__all__ = ["register", "specialize_main", "entry", "parse_latency_budget", "LatencyBudget"]

log = logging.getLogger("ofa.specialize")

ALGORITHMS = ("nsga2", "evolution", "random")
OBJECTIVE_NAMES = ("accuracy", "latency", "params", "macs")


@dataclass(frozen=True)
class LatencyBudget:
    device: str | None  # None: the single --device
    ms: float


def parse_latency_budget(text: str) -> LatencyBudget:
    """`20ms` (for the one `--device`) or `jetson=20ms` (argparse type: bad values are usage errors)."""
    device, _, value = str(text).rpartition("=")
    if device and not re.fullmatch(r"[A-Za-z0-9_.-]+", device):
        raise argparse.ArgumentTypeError(f"invalid device name {device!r} in --latency {text!r}: use letters, digits, . _ -")
    try:
        ms = parse_duration_ms(value)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (optionally prefixed by DEVICE=, e.g. jetson=20ms)") from None
    return LatencyBudget(device or None, ms)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work", default="work", help="work directory holding latency/, predictor/, supernet/ (default: %(default)s)")
    parser.add_argument("--space", help="preset or .yaml/.json (default: the space of WORK/supernet)")
    parser.add_argument("--device", action="append", default=None, metavar="NAME", help="device whose table WORK/latency/NAME.json to use (repeatable)")
    parser.add_argument(
        "--latency", action="append", type=parse_latency_budget, default=None, metavar="[DEVICE=]TIME",
        help="latency budget: 20ms, 1.5s, 500us; DEVICE=20ms for several devices (repeatable)",
    )
    parser.add_argument("--params", type=parse_count, metavar="COUNT", help="parameter budget: 5M, 1.2G, 250k")
    parser.add_argument("--size", type=parse_bytes, metavar="BYTES", help="model size budget (fp32 weights, 4 bytes per parameter): 5MB, 800KB")
    parser.add_argument("--macs", type=parse_count, metavar="COUNT", help="MACs budget: 300M, 1.2G")
    parser.add_argument(
        "--objectives", default=None, metavar="LIST",
        help="comma-separated from accuracy, latency, params, macs (default: accuracy,latency with a device, else accuracy,macs)",
    )
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="nsga2", help="nsga2 (default), or the baselines evolution / random")
    parser.add_argument("--pop", type=int, default=100, help="population size (default: %(default)s)")
    parser.add_argument("--generations", type=int, default=100, help="generations (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predictor", help="accuracy predictor directory (default: WORK/predictor)")
    parser.add_argument("--accuracy-proxy", choices=("macs",), default=None, help="rank accuracy by MACs instead of a predictor (more MACs = more accurate)")
    parser.add_argument("--top-k", type=int, default=5, help="candidates to verify (default: %(default)s)")
    parser.add_argument("--verify", action="store_true", help="measure the top-k candidates' accuracy (and latency where the runtime is here)")
    parser.add_argument("--supernet", help="supernet directory for --verify (default: WORK/supernet)")
    parser.add_argument("--data", help="dataset for --verify (default: the one the supernet was trained on)")
    parser.add_argument("--n-calib", type=int, default=2000, help="images for BatchNorm re-calibration in --verify (default: %(default)s)")
    parser.add_argument("--name", help="output name: WORK/specialized/NAME (default: from the budgets, e.g. jetson-20ms)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "specialize", help="search the most accurate subnet within device budgets (NSGA-II)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    add_common(parser)
    parser.set_defaults(func=run_specialize, _parser=parser)


# ----------------------------------------------------------------------------- inputs
def _resolve_space(args: argparse.Namespace, work: Path) -> SearchSpace:
    if args.space:
        return SearchSpace.resolve(args.space)
    meta = Path(args.supernet or work / "supernet") / "supernet.json"
    if meta.is_file():
        return SearchSpace.resolve(meta.parent)  # the supernet's own space, class count included
    raise UsageError(f"no --space given and no supernet in {meta.parent}: pass --space (a preset such as ofa-mbv3-w1.0, or a .yaml/.json file)")


def _budget_per_device(args: argparse.Namespace) -> tuple[list[str], dict[str, float]]:
    as_list = lambda v: [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]  # noqa: E731 (config scalars)
    devices = list(dict.fromkeys(str(d) for d in as_list(args.device)))
    budgets: dict[str, float] = {}
    for b in as_list(args.latency):
        if b.device is None:
            if len(devices) != 1:
                raise UsageError(
                    f"--latency {b.ms:g}ms names no device and {'no' if not devices else len(devices)} --device given: "
                    "pass one --device, or write --latency DEVICE=TIME"
                )
            budgets[devices[0]] = b.ms
        else:
            budgets[b.device] = b.ms
            if b.device not in devices:
                devices.append(b.device)
    return devices, budgets


def _load_table(work: Path, device: str, space: SearchSpace):
    """The table for `device` (WORK/latency/DEVICE.json, or DEVICE itself if a .json path), checked against `space`."""
    try:
        from latency.table import LatencyTable, table_path
    except ImportError as exc:
        raise OfaError(f"the latency package is not importable ({exc}); reinstall ofa-deploy") from None
    path = table_path(device, work)
    if not path.is_file():
        folder = work / "latency"
        existing = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        hint = f"tables in {folder}: {', '.join(existing)}" if existing else f"no tables in {folder}"
        raise OfaError(f"no latency table for device {device!r} ({path} missing; {hint}): build one with `ofa latency build --device {device}`")
    return LatencyTable.load(path, space), path


def _table_metric(table, device: str) -> Metric:
    return Metric(f"latency:{device}", lambda codes: table.predict_codes(codes), maximize=False, unit="ms")


def _searchable_space(space: SearchSpace, tables: dict) -> tuple[SearchSpace, np.ndarray]:
    """The space restricted to resolutions every table covers, and the map to the full space's indices."""
    allowed = [r for r in space.resolutions if all(r in t.resolutions for t in tables.values())]
    if not allowed:
        covered = "; ".join(f"{d}: {', '.join(map(str, t.resolutions))}" for d, t in tables.items())
        raise OfaError(f"the latency tables share no resolution ({covered}): rebuild them with common --resolutions")
    if len(allowed) < len(space.resolutions):
        log.info("searching resolutions %s (those every latency table covers)", ", ".join(map(str, allowed)))
    return restrict_resolutions(space, allowed)


def _describe_table(table, path: Path) -> str:
    summary = table.summary() if hasattr(table, "summary") else f"{table.device}: {table.runtime}"
    return f"latency table `{path}`: {summary}"


def _accuracy_metric(args: argparse.Namespace, work: Path, space: SearchSpace, cost_fn) -> tuple[Metric, str]:
    if args.accuracy_proxy == "macs":
        return Metric("accuracy", lambda codes: cost_fn(codes)[1].astype(np.float64), maximize=True, unit="MACs"), (
            "proxy: MACs (more MACs ranked as more accurate; values are MACs, not accuracy)"
        )
    path = Path(args.predictor or work / "predictor")
    if not path.exists():
        raise OfaError(
            f"no accuracy predictor in {path}: fit one with `ofa predictor fit --work {work}`, or pass --accuracy-proxy macs"
        )
    try:
        from predictors import AccuracyPredictor
    except ImportError as exc:
        raise OfaError(f"the predictors package is not importable ({exc}); reinstall ofa-deploy") from None
    predictor = AccuracyPredictor.load(path, space)
    return Metric("accuracy", predictor.predict_codes, maximize=True, unit="top-1"), f"predictor `{path}` ({_predictor_quality(predictor)})"


def _predictor_quality(predictor) -> str:
    """The predictor's model and held-out figures, as recorded in its metadata."""
    meta = getattr(predictor, "metadata", {}) or {}
    figures = []
    for key in ("validation", "test", "metrics", "selection"):
        block = meta.get(key)
        if isinstance(block, dict):
            figures += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in block.items() if isinstance(v, (int, float, str))]
    model = getattr(predictor, "model_name", "model")
    return f"{model}; " + (", ".join(figures) if figures else "no validation figures recorded")


def _objectives(text: str | None, devices: list[str]) -> list[str]:
    if text is None:
        return ["accuracy"] + ([f"latency:{d}" for d in devices] if devices else ["macs"])
    names = [t.strip() for t in text.split(",") if t.strip()]
    out: list[str] = []
    for name in names:
        if name == "latency":
            if not devices:
                raise UsageError("objective latency needs a device: pass --device NAME or --latency NAME=TIME")
            out += [f"latency:{d}" for d in devices]
        elif name.startswith("latency:") and name[8:] in devices:
            out.append(name)
        elif name in ("accuracy", "params", "macs"):
            out.append(name)
        else:
            raise UsageError(f"unknown objective {name!r} in --objectives: choose from {', '.join(OBJECTIVE_NAMES)} (comma-separated)")
    if "accuracy" not in out:
        out.insert(0, "accuracy")
    return list(dict.fromkeys(out))


def _default_name(budgets: dict[str, float], args: argparse.Namespace) -> str:
    parts = [f"{d}-{ms:g}ms" for d, ms in budgets.items()]
    if args.params:
        parts.append(f"params-{format_count(args.params).replace('.00', '')}")
    if args.macs:
        parts.append(f"macs-{format_count(args.macs).replace('.00', '')}")
    if args.size:
        parts.append(f"size-{format_count(args.size).replace('.00', '')}B")
    return "_".join(parts) or "unconstrained"


def _check_feasible(space: SearchSpace, metrics: dict[str, Metric], constraints: list[Constraint]) -> None:
    """Exit before searching if the cheapest subnet already breaks a budget."""
    for c in constraints:
        lowest = minimum_of(space, metrics[c.metric].fn)
        if lowest.value <= c.upper:
            continue
        where = f"at {lowest.arch.resolution} px"
        if c.metric.startswith("latency:"):
            device = c.metric[8:]
            raise SearchError(
                f"latency budget {c.upper:g} ms on {device} is below the fastest subnet of this space "
                f"({lowest.value:.3g} ms {where}): raise --latency to at least that"
            )
        flag = {"params": "--params", "macs": "--macs", "size": "--size"}[c.metric]
        where = f" {where}" if c.metric == "macs" else ""
        unit = "B" if c.metric == "size" else ""
        raise SearchError(
            f"{c.metric} budget {format_count(c.upper)}{unit} is below the smallest subnet of this space "
            f"({format_count(lowest.value)}{unit} {c.metric}{where}): raise {flag} to at least that"
        )


# ----------------------------------------------------------------------------- run
def run_specialize(args: argparse.Namespace) -> int:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for flag, value, low in (("--pop", args.pop, 4), ("--generations", args.generations, 1), ("--top-k", args.top_k, 1), ("--n-calib", args.n_calib, 1)):
        if value < low:
            raise UsageError(f"{flag} must be >= {low}, got {value}")
    work = Path(args.work)
    space = _resolve_space(args, work)
    devices, latency_budgets = _budget_per_device(args)
    objectives = _objectives(args.objectives, devices)

    from ofa.costs import CostModel

    cost = CostModel.for_space(space)
    accuracy, accuracy_source = _accuracy_metric(args, work, space, cost.count_codes)
    sources: list[str] = [accuracy_source] if not args.accuracy_proxy else []
    full_metrics: list[Metric] = [accuracy]
    tables = {}
    for device in devices:
        table, path = _load_table(work, device, space)
        tables[device] = table
        full_metrics.append(_table_metric(table, device))
        sources.append(_describe_table(table, path))
    full_metrics.append(Metric("params", lambda codes: cost.count_codes(codes)[0], unit="params"))
    full_metrics.append(Metric("macs", lambda codes: cost.count_codes(codes)[1], unit="MACs"))
    if args.size:  # fp32 weights: a budget only, derived from params, so not reported otherwise
        full_metrics.append(Metric("size", lambda codes: 4.0 * cost.count_codes(codes)[0], unit="bytes"))
    search_space, res_index = _searchable_space(space, tables)
    metrics = {m.name: (m if search_space is space else on_subspace(m, res_index)) for m in full_metrics}

    constraints = [Constraint(f"latency:{d}", ms) for d, ms in latency_budgets.items()]
    if args.params:
        constraints.append(Constraint("params", float(args.params)))
    if args.macs:
        constraints.append(Constraint("macs", float(args.macs)))
    if args.size:
        constraints.append(Constraint("size", float(args.size)))
    _check_feasible(search_space, metrics, constraints)
    name = args.name or _default_name(latency_budgets, args)
    if not re.fullmatch(r"[A-Za-z0-9_.=-]+", name):
        raise UsageError(f"--name {name!r}: use letters, digits and . _ - = only")
    out_dir = work / "specialized" / name

    problem = SubnetProblem(search_space, list(metrics.values()), objectives, constraints)
    progress = not args.quiet
    if args.algorithm == "nsga2":
        result = run_nsga2(problem, args.pop, args.generations, args.seed, progress=progress)
    elif args.algorithm == "evolution":
        result = run_evolution(problem, args.pop, args.generations, args.seed, progress=progress)
    else:
        result = run_random(problem, args.pop * args.generations, args.seed, progress=progress)
    if len(result.codes) == 0:
        raise SearchError(
            f"no subnet within all budgets after {result.n_evaluations} evaluations ({args.algorithm}): "
            "each budget alone is achievable but not all together; loosen one, or raise --generations"
        )
    if search_space is not space:  # report codes and fingerprint of the full space
        result = dc_replace(result, space=space, codes=space.encode(result.archs))
    chosen = result.best("accuracy")

    verified: tuple[Verified, ...] = ()
    verify_note = ""
    if args.verify:
        verified, verify_note = _verify(args, work, space, result, tables, latency_budgets, out_dir, progress)
        chosen = [str(a) for a in result.archs].index(str(_choose_verified(verified, result.archs[chosen])))
        if verified and all(v.meets_budgets is False for v in verified):
            verify_note = "\n".join(filter(None, [verify_note, (
                f"none of the top-{len(verified)} candidates met the budgets when measured: chosen.json keeps the predicted best; "
                "the table predicts less latency than measured: recalibrate it (`ofa latency calibrate`) or search again with a lower --latency"
            )]))

    info = RunInfo(
        name=name,
        command=" ".join([Path(sys.argv[0]).name, *map(shlex.quote, sys.argv[1:])]) if sys.argv else "ofa-specialize",
        budgets={c.metric: c.upper for c in constraints},
        accuracy_source=accuracy_source,
        sources=tuple(sources),
        verified=verified,
        verify_note=verify_note,
        started_at=started,
        extra={"population x generations": f"{args.pop} x {args.generations}"},
    )
    write_outputs(out_dir, result, chosen, info)
    _print_summary(result, chosen, out_dir, verified, verify_note, args.quiet)
    return 0


def _print_summary(result: SearchResult, chosen: int, out_dir: Path, verified: Sequence[Verified], note: str, quiet: bool) -> None:
    if not quiet:
        print(
            f"{result.algorithm}: {result.n_evaluations} evaluations ({result.n_unique} distinct) in {result.seconds:.2f} s; "
            f"Pareto front of {len(result.codes)} archs within the budgets"
        )
        print(summary_table(result, chosen))
        for v in verified:
            lat = ", ".join(f"{d} {ms:.3f} ms" for d, ms in v.measured_latency_ms.items())
            top1 = "-" if v.measured_top1 is None else f"{v.measured_top1 * 100:.2f}%"
            print(f"verified {v.arch}: top-1 {top1}{', ' + lat if lat else ''}")
    if note:  # part of the result: says what was not verified and how to do it
        print(note)
    figures = ", ".join(f"{m} {format_metric(m, v)}" for m, v in result.metrics_of(chosen).items())
    print(f"chosen {result.archs[chosen]} ({figures}) -> {out_dir / 'chosen.json'}")


# ----------------------------------------------------------------------------- --verify
def _verify(args, work: Path, space: SearchSpace, result: SearchResult, tables: dict, budgets: dict[str, float], out_dir: Path, progress: bool):
    """Measure top-k candidates: accuracy on the test split; latency where the table's runtime runs here."""
    from tqdm import tqdm

    from ofa.data import load_dataset
    from ofa.evaluate import evaluate_arch
    from ofa.supernet import Supernet

    supernet = Supernet.load(args.supernet or work / "supernet")
    if supernet.space.fingerprint() != space.fingerprint():
        raise OfaError(f"supernet {args.supernet or work / 'supernet'} is for space {supernet.space.name!r}, not {space.name!r}: pass the matching --space")
    data_spec = args.data or (supernet.metadata.get("data") or {}).get("source") or (supernet.metadata.get("data") or {}).get("spec")
    if not data_spec:
        raise UsageError("--verify needs the evaluation data: pass --data (e.g. digits, cifar10:PATH.tar.gz, or an ImageFolder path)")
    splits = load_dataset(str(data_spec), progress=progress)
    order = [int(i) for i in np.argsort(-result.column("accuracy"), kind="stable")[: args.top_k]]
    archs = [result.archs[i] for i in order]
    for rank, arch in enumerate(archs, start=1):
        arch.save(out_dir / "candidates" / f"top-{rank}.json")
    top1 = [
        float(evaluate_arch(supernet, arch, splits.train, splits.test, n_calib=args.n_calib).top1)
        for arch in tqdm(archs, desc="verify accuracy", disable=not progress, leave=False)
    ]
    measured: dict[str, np.ndarray] = {}
    notes = []
    for device, table in tables.items():
        ms, why = _measure_here(table, space, archs, progress)
        if ms is None:
            notes.append(
                f"latency on {device} not measured: {why}; copy {out_dir / 'candidates'}/top-1..top-{len(archs)}.json to {device} "
                f"and time them there with runtime {getattr(table, 'runtime', '?')} (see `ofa latency --help`)"
            )
        else:
            measured[device] = ms
    out = []
    for j, (row, arch) in enumerate(zip(order, archs)):
        lat = {d: float(ms[j]) for d, ms in measured.items()}
        meets = None if not lat else all(v <= budgets[d] for d, v in lat.items() if d in budgets)
        out.append(Verified(arch, result.metrics_of(row), top1[j], lat, meets))
    return tuple(out), "\n".join(notes)


def _measure_here(table, space: SearchSpace, archs: list[Arch], progress: bool) -> tuple[np.ndarray | None, str]:
    """Whole-network latencies with the table's runtime, if the table was timed on this machine."""
    try:
        from latency.build import time_networks
        from latency.runtimes import host_description, make_backend
    except ImportError as exc:
        return None, f"the latency package is not importable ({exc})"
    here, there = host_description(), dict(getattr(table, "host", {}) or {})
    same_host = bool(there) and all(there.get(k) == here.get(k) for k in ("machine", "cpu", "gpu"))
    if not same_host:
        return None, f"the table was timed on another machine ({there.get('cpu') or there.get('gpu') or 'unknown host'}), not this one"
    try:
        backend = make_backend(table.runtime, table.threads, table.batch, table.precision)
    except OfaError as exc:
        return None, f"runtime {table.runtime} is not available here ({exc})"
    with backend:
        return time_networks(space, archs, backend, batch=table.batch, progress=progress), ""


def _choose_verified(verified: Sequence[Verified], fallback: Arch) -> Arch:
    """Best measured top-1 among candidates whose measured latency meets the budgets (or was not measured)."""
    ok = [v for v in verified if v.meets_budgets is not False and v.measured_top1 is not None]
    if not ok:
        return fallback
    return max(ok, key=lambda v: v.measured_top1).arch


# ----------------------------------------------------------------------------- console script
def specialize_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ofa-specialize` console script (same options as `ofa specialize`)."""
    from ofa.cli import run

    parser = argparse.ArgumentParser(prog="ofa-specialize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    add_common(parser)
    parser.set_defaults(func=run_specialize, _parser=parser)
    return run(parser, {}, list(sys.argv[1:] if argv is None else argv))


def entry() -> None:
    sys.exit(specialize_main())
