"""`ofa latency`: per-device latency lookup tables (build, calibrate, validate, predict, list, bundle, import)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ofa.cli import UsageError, add_common
from ofa.commands.info import resolve_arch
from ofa.space import SearchSpace

log = logging.getLogger("ofa")

DEFAULT_SPACE = "ofa-mbv3-w1.0"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", help="latency table JSON (default: <work>/latency/<device>.json)")
    p.add_argument("--device", help="device name: the table <work>/latency/NAME.json")
    p.add_argument("--work", default="work", help="work directory (default: %(default)s)")


def _time_per_net(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-per-net", type=_positive_float, default=300.0, metavar="MS", help="timing budget per network (default: %(default)s)")


def register(sub: argparse._SubParsersAction) -> None:
    from latency.runtimes import PRECISIONS, RUNTIMES
    from latency.timing import STATISTICS

    parser = sub.add_parser("latency", help="per-device latency lookup tables", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    p = actions.add_parser("build", help="time every layer of a space on a runtime (resumable)")
    p.add_argument("--space", default=DEFAULT_SPACE, help="preset name, .yaml/.json space file, or a supernet directory (default: %(default)s)")
    p.add_argument("--runtime", default="ort-cpu", choices=RUNTIMES, help="timing runtime (default: %(default)s)")
    p.add_argument("--device", default="local", help="device name recorded in the table (default: %(default)s)")
    p.add_argument("--threads", type=_positive_int, default=1, help="CPU threads (default: %(default)s)")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default: %(default)s)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="(default: %(default)s)")
    p.add_argument("--resolutions", type=_positive_int, nargs="+", help="input sides to cover (default: all of the space's)")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"), help="wall time, or (with --threads 1) process CPU time, which "
                   "other processes on a shared machine do not inflate (default: %(default)s)")
    p.add_argument(
        "--time-per-entry", type=_positive_float, default=60.0, metavar="MS", help="timing budget per layer in ms (default: %(default)s)"
    )
    p.add_argument("--rounds", type=_positive_int, default=3, help="interleaved timing rounds (default: %(default)s)")
    p.add_argument("--statistic", default="median", choices=STATISTICS, help="what predicts: median, or p10 (10th percentile) on a machine "
                   "shared with other work, where the CPU is stolen at random (default: %(default)s)")
    p.add_argument("--out", help="table to write (default: <work>/latency/<device>.json); an unfinished one is resumed")
    p.add_argument("--work", default="work", help="work directory (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="start over instead of resuming an existing table")
    add_common(p)
    p.set_defaults(func=_build, _parser=p)

    p = actions.add_parser("calibrate", help="time random whole networks and fit the table's correction")
    _table_args(p)
    p.add_argument("--n", type=_positive_int, default=10, help="networks to time (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--validate", type=_positive_int, metavar="N",
        help="also validate on N held-out networks timed in the same interleaved rounds (best on a shared machine)",
    )
    p.add_argument("--plot", help="with --validate: PNG to write (default: beside the table, <name>.validation.png)")
    _time_per_net(p)
    add_common(p)
    p.set_defaults(func=_calibrate, _parser=p)

    p = actions.add_parser("validate", help="time held-out networks; record accuracy and plot predicted vs measured")
    _table_args(p)
    p.add_argument("--n", type=_positive_int, default=100, help="networks to time (default: %(default)s)")
    p.add_argument("--seed", type=int, default=2)
    _time_per_net(p)
    p.add_argument("--plot", help="PNG to write (default: beside the table, <name>.validation.png)")
    add_common(p)
    p.set_defaults(func=_validate, _parser=p)

    p = actions.add_parser("predict", help="predicted latency of an arch")
    _table_args(p)
    p.add_argument("--arch", default="max", help="max, min, or an arch JSON file (default: %(default)s)")
    p.add_argument("--space", help="refuse the table unless it belongs to this space")
    p.add_argument("--raw", action="store_true", help="sum of layers without the calibration")
    add_common(p)
    p.set_defaults(func=_predict, _parser=p)

    p = actions.add_parser("list", help="tables in a work directory")
    p.add_argument("--work", default="work", help="work directory (default: %(default)s)")
    add_common(p)
    p.set_defaults(func=_list, _parser=p)

    p = actions.add_parser("bundle", help="profiling bundle for a device without PyTorch (ONNX + runner script)")
    p.add_argument("--space", default=DEFAULT_SPACE, help="preset name, .yaml/.json space file, or a supernet directory (default: %(default)s)")
    p.add_argument("--runtime", default="ort-cpu", choices=("ort-cpu", "tensorrt"), help="(default: %(default)s)")
    p.add_argument("--batch", type=_positive_int, default=1)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--resolutions", type=_positive_int, nargs="+", help="input sides to cover (default: all)")
    p.add_argument("--n-calibrate", type=int, default=10, help="calibration networks (default: %(default)s)")
    p.add_argument("--n-validate", type=int, default=100, help="validation networks (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="bundle.tar.gz", help="archive to write (default: %(default)s)")
    add_common(p)
    p.set_defaults(func=_bundle, _parser=p)

    p = actions.add_parser("import", help="make a table from a bundle's results.json")
    p.add_argument("results", help="results.json written by the bundle's runner.py")
    p.add_argument("--device", help="device name (default: from the device info)")
    p.add_argument(
        "--statistic", default="median", choices=STATISTICS, help="median, or p10 if the device was busy with other work (default: %(default)s)"
    )
    p.add_argument("--out", help="table to write (default: <work>/latency/<device>.json)")
    p.add_argument("--work", default="work", help="work directory (default: %(default)s)")
    add_common(p)
    p.set_defaults(func=_import, _parser=p)

    p = actions.add_parser("import-mit", help="import once-for-all's published Note10 lookup tables (YAML)")
    p.add_argument("directory", help="folder of <res>_lookup_table.yaml files")
    p.add_argument("--space", default="ofa-mbv3-w1.2", help="space the tables were made for (default: %(default)s)")
    p.add_argument("--device", default="note10", help="(default: %(default)s)")
    p.add_argument("--out", help="table to write (default: <work>/latency/<device>.json)")
    p.add_argument("--work", default="work", help="work directory (default: %(default)s)")
    add_common(p)
    p.set_defaults(func=_import_mit, _parser=p)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _table_file(args: argparse.Namespace) -> Path:
    from latency.table import table_path

    if args.table:
        return Path(args.table)
    if args.device:
        return table_path(args.device, args.work)
    raise UsageError("say which table: --table FILE or --device NAME (the table <work>/latency/NAME.json)")


def _build(args: argparse.Namespace) -> int:
    from latency.build import BuildSettings, build_table
    from latency.table import table_path

    space = SearchSpace.resolve(args.space)
    out = Path(args.out) if args.out else table_path(args.device, args.work)
    settings = BuildSettings(
        runtime=args.runtime, device=args.device, threads=args.threads, batch=args.batch, precision=args.precision,
        resolutions=tuple(args.resolutions) if args.resolutions else None, time_per_entry_ms=args.time_per_entry, rounds=args.rounds,
        statistic=args.statistic, clock=args.clock,
    )
    table = build_table(space, settings, out, progress=not args.quiet, force=args.force)
    print(f"wrote {out}: {table.summary()}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from latency.calibrate import calibrate, calibrate_and_validate
    from latency.table import LatencyTable

    path = _table_file(args)
    table, progress = LatencyTable.load(path), not args.quiet
    if args.validate:
        table = calibrate_and_validate(table, args.n, args.validate, args.seed, args.time_per_net, progress=progress)
    else:
        table = calibrate(table, n=args.n, seed=args.seed, time_per_net_ms=args.time_per_net, progress=progress)
    table.save(path)
    cal = table.calibration
    if cal.stage_scales:
        stages = " + ".join(f"{v:.4f} * stage{i + 1}" for i, v in enumerate(cal.stage_scales))
        fit = f"{cal.scale:.4f} * (stem, first block, head) + {stages}"
    else:
        fit = f"{cal.scale:.4f} * sum"
    fit += f" + {cal.per_layer_ms:.4f} ms * layers" if cal.per_layer_ms else ""
    fit += f" + {cal.per_mparam_ms:.4f} ms * Mparams" if cal.per_mparam_ms else ""
    fit += f" + {cal.per_gmac_ms:.4f} ms * GMACs" if cal.per_gmac_ms else ""
    fit += f" + {cal.offset_ms:.4f} ms"
    print(f"calibrated {path} on {args.n} networks ({cal.model}, lowest leave-one-out error): measured = {fit}")
    if args.validate:
        _report_validation(table, path, args.plot)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from latency.calibrate import validate
    from latency.table import LatencyTable

    path = _table_file(args)
    table = validate(LatencyTable.load(path), n=args.n, seed=args.seed, time_per_net_ms=args.time_per_net, progress=not args.quiet)
    table.save(path)
    _report_validation(table, path, args.plot)
    return 0


def _report_validation(table, path: Path, plot_path: str | None) -> None:
    from latency.calibrate import plot_validation

    plot = plot_validation(table, plot_path or path.with_suffix(".validation.png"))
    for name in ("raw", "calibrated", "macs_proxy"):
        m = table.validation.get(name)
        if m:
            print(
                f"{name:>10}: MAPE {m['mape']:.2f}%, within ±5% {m['within_5'] * 100:.1f}%, ±10% {m['within_10'] * 100:.1f}%, "
                f"Spearman {m['spearman']:.3f}, Kendall tau {m['kendall_tau']:.3f}, bias {m['bias_pct']:+.2f}%"
            )
    print(f"wrote the validation section of {path} and {plot}")


def _predict(args: argparse.Namespace) -> int:
    from latency.table import LatencyTable

    space = SearchSpace.resolve(args.space) if args.space else None
    table = LatencyTable.load(_table_file(args), space=space)
    arch = resolve_arch(args.arch, table.space)
    latency = float(table.predict([arch], calibrated=not args.raw)[0])
    calibrated = bool(table.calibration and not args.raw)
    print(json.dumps({"arch": arch.key(), "device": table.device, "latency_ms": latency, "calibrated": calibrated}))
    return 0


def _list(args: argparse.Namespace) -> int:
    from latency.errors import LatencyError
    from latency.table import LatencyTable

    folder = Path(args.work) / "latency"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        print(f"no latency tables in {folder}: build one with `ofa latency build --device NAME`")
        return 0
    for path in files:
        try:
            print(f"{path.stem}: {LatencyTable.load(path).summary()}")
        except LatencyError as exc:
            print(f"{path.stem}: unreadable ({exc})")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from latency.bundle import write_bundle

    space = SearchSpace.resolve(args.space)
    out = write_bundle(
        space, args.out, runtime=args.runtime, resolutions=tuple(args.resolutions) if args.resolutions else None, batch=args.batch,
        precision=args.precision, n_calibrate=args.n_calibrate, n_validate=args.n_validate, seed=args.seed, progress=not args.quiet,
    )
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB): copy it to the device, `tar xzf` it, run `python3 ofa-latency-bundle/runner.py`")
    return 0


def _import(args: argparse.Namespace) -> int:
    from latency.bundle import import_results
    from latency.table import table_path

    table = import_results(args.results, device=args.device, statistic=args.statistic)
    out = Path(args.out) if args.out else table_path(table.device, args.work)
    table.save(out)
    print(f"wrote {out}: {table.summary()}")
    return 0


def _import_mit(args: argparse.Namespace) -> int:
    from latency.mit_tables import import_mit_tables
    from latency.table import table_path

    table = import_mit_tables(args.directory, SearchSpace.resolve(args.space), device=args.device)
    out = Path(args.out) if args.out else table_path(args.device, args.work)
    table.save(out)
    print(f"wrote {out}: {table.summary()}")
    return 0
