"""How accurate could a calibration of a latency table be?  Offline re-fits on measured networks.

    python benchmarks/latency_refit.py /tmp/ofa-bench-latency/t1-cpu.json

Takes a table that `bench_latency.py` (or `ofa latency calibrate --validate`) calibrated and validated,
pools its calibration and held-out networks (their measurements are stored in the table), and
repeatedly fits candidate corrections of the sum of layers on a random subset, scoring the share of
the remaining networks predicted within ±5%.  Prints a table and writes JSON next to the results.
It times nothing: it answers "is the model or the number of calibration networks the limit?".
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from latency.calibrate import _MODELS, _design, _robust_fit, accuracy_metrics, fit_calibration
from latency.errors import LatencyError
from latency.keys import arch_from_key
from latency.table import LatencyTable
from ofa.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def _features(table: LatencyTable, archs: list) -> dict[str, np.ndarray]:
    params, macs = table.space.count_many(archs)
    return {
        "raw": table.predict(archs, calibrated=False), "stages": table.stage_ms(archs),
        "layers": table.n_layers(archs).astype(float), "params": params.astype(float), "macs": macs.astype(float),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="a calibrated and validated table JSON")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40], help="calibration-set sizes")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", default=str(RESULTS / "latency_refit.json"))
    args = parser.parse_args()

    try:
        table = LatencyTable.load(args.table)
    except LatencyError as exc:
        raise SystemExit(f"error: {exc}") from None
    if table.calibration is None or not table.validation:
        raise SystemExit(f"{args.table}: needs a calibration and a validation section (run `ofa latency calibrate --validate`)")
    keys = list(table.calibration.archs) + list(table.validation["archs"])
    measured = np.array(list(table.calibration.measured_ms) + list(table.validation["measured_ms"]))
    archs = [arch_from_key(table.space, k) for k in keys]
    f = _features(table, archs)
    models = {m: _design(m, f["raw"], f["layers"], f["params"], f["macs"], f["stages"]) for m in _MODELS}
    rng = np.random.default_rng(0)
    ratio = measured / f["raw"]
    report = {
        "table": str(args.table), "networks": len(measured),
        "ratio_spread_pct": float(np.std(ratio) / np.mean(ratio) * 100),
        "correlation_with_log_ratio": {
            name: float(np.corrcoef(np.log(ratio), v)[0, 1])
            for name, v in (("layers", f["layers"]), ("params", f["params"]), ("macs", f["macs"]),
                            ("resolution", np.array([a.resolution for a in archs], float)))
        },
        "within_5": {},
    }
    for name, design in models.items():
        row = {}
        for n in args.sizes:
            scores = []
            for _ in range(args.repeats):
                idx = rng.permutation(len(measured))
                fit, held = idx[:n], idx[n:]
                coef = _robust_fit(design[fit], measured[fit])
                scores.append(accuracy_metrics(design[held] @ coef, measured[held])["within_5"])
            row[str(n)] = float(np.median(scores))
        coef = _robust_fit(design, measured)
        row["all, in-sample"] = accuracy_metrics(design @ coef, measured)["within_5"]
        report["within_5"][name] = row
    shipped, chosen = {}, collections.Counter()
    for n in args.sizes:  # what `fit_calibration` (model chosen by leave-one-out error) does
        scores = []
        for _ in range(args.repeats):
            idx = rng.permutation(len(measured))
            fit, held = idx[:n], idx[n:]
            cal = fit_calibration([archs[i] for i in fit], f["raw"][fit], measured[fit], f["layers"][fit], f["params"][fit], f["macs"][fit],
                                  f["stages"][fit])
            chosen[cal.model] += 1
            pred = cal.apply(f["raw"][held], f["layers"][held], f["params"][held], f["macs"][held], f["stages"][held])
            scores.append(accuracy_metrics(pred, measured[held])["within_5"])
        shipped[str(n)] = float(np.median(scores))
    report["within_5"]["fit_calibration (leave-one-out choice)"] = shipped
    report["models_chosen"] = dict(chosen)

    print(f"{len(measured)} networks; measured / sum-of-layers spread {report['ratio_spread_pct']:.1f}%; "
          + ", ".join(f"r({k}) {v:+.2f}" for k, v in report["correlation_with_log_ratio"].items()))
    cols = [str(n) for n in args.sizes] + ["all, in-sample"]
    print(f"{'held-out within ±5% by calibration networks':44s}" + "".join(f"{c:>16s}" for c in cols))
    for name, row in report["within_5"].items():
        print(f"{name:44s}" + "".join(f"{row[c] * 100:15.0f}%" if c in row else f"{'-':>16s}" for c in cols))
    atomic_write_json(args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
