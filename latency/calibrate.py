"""Calibration and validation of a table against whole networks timed on the same runtime.

A sum of separately timed layers misses per-network effects (caches warmed by the previous layer,
fused boundaries, one call instead of many), so we fit `measured ≈ scale * sum + offset` on a few
random networks.  Validation then times networks never used for the fit and reports how well the
table predicts and ranks them, next to a MACs-only linear proxy on the same networks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from latency.build import time_networks
from latency.errors import LatencyError
from latency.keys import arch_from_key
from latency.runtimes import make_backend
from latency.table import Calibration, LatencyTable
from ofa.io import atomic_write
from ofa.space import Arch, SearchSpace

__all__ = [
    "sample_archs",
    "fit_calibration",
    "accuracy_metrics",
    "calibrate",
    "calibrate_with",
    "validate",
    "validate_with",
    "calibrate_and_validate",
    "plot_validation",
]


def sample_archs(space: SearchSpace, resolutions: Sequence[int], n: int, seed: int, exclude: Sequence[str] = ()) -> list[Arch]:
    """`n` distinct random archs at the given resolutions, none of whose keys is in `exclude`."""
    rng = np.random.default_rng(seed)
    seen, out = set(exclude), []
    while len(out) < n:
        arch = space.sample(rng)
        arch = Arch(arch.kernel, arch.expand, arch.depth, int(rng.choice(np.array(resolutions))))
        if arch.key() not in seen:
            seen.add(arch.key())
            out.append(arch)
    return out


MIN_FOR_THREE_TERMS = 6  # networks needed before a third term (per layer or per parameter) is considered
MIN_FOR_FOUR_TERMS = 20  # networks needed before the four-term model (MACs and parameters) is considered
STAGE_NETWORKS_PER_TERM = 4  # per-stage scales need this many networks per fitted coefficient (and MIN_FOR_FOUR_TERMS)

# candidate corrections: extra regressors beside `scale * raw` (a column of ones is the offset)
_MODELS = {
    "scale": (),
    "scale+offset": ("offset",),
    "scale+layers+offset": ("layers", "offset"),
    "scale+params+offset": ("params", "offset"),
    # compute inside a network runs at another speed than alone, and weights stream from memory:
    # on a 2-core Xeon (ORT, 1 thread, 140 networks) this lifted cross-validated ±5% from 88% to 93% at 40 networks
    "scale+macs+params+offset": ("macs", "params", "offset"),
    # one factor per stage (the scale then covers stem, first block and head): on the same Xeon, quiet,
    # 99% held-out within ±5% at 40 networks against 98% for the four-term model (benchmarks/latency_refit.py)
    "scale+stages+offset": ("stages", "offset"),
}


def _design(
    model: str, raw: np.ndarray, layers: np.ndarray, params: np.ndarray, macs: np.ndarray, stage_ms: np.ndarray | None = None
) -> np.ndarray:
    if model == "scale+stages+offset":
        return np.column_stack([raw - stage_ms.sum(axis=1), stage_ms, np.ones_like(raw)])
    columns = {"layers": layers, "params": params / 1e6, "macs": macs / 1e9, "offset": np.ones_like(raw)}
    return np.column_stack([raw, *(columns[name] for name in _MODELS[model])])


def _robust_fit(design: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Coefficients minimizing a soft-L1 loss of the *relative* residuals.

    Relative, because the goals are relative errors; soft-L1, because on a shared machine one
    network timed during a burst of load (measured 1.5x too slow) must not drag the whole fit.
    """
    from scipy.optimize import least_squares

    start = np.linalg.lstsq(design, measured, rcond=None)[0]
    fit = least_squares(lambda c: (design @ c - measured) / measured, start, loss="soft_l1", f_scale=0.02)
    return fit.x


def _loo_error(design: np.ndarray, measured: np.ndarray) -> float:
    """Median relative leave-one-out error (each network predicted by a fit on the others)."""
    errors = []
    for i in range(len(measured)):
        keep = np.arange(len(measured)) != i
        coef = _robust_fit(design[keep], measured[keep])
        errors.append(abs(design[i] @ coef - measured[i]) / measured[i])
    return float(np.median(errors))


def _scales_positive(model: str, coef: np.ndarray) -> bool:
    """The scale of the layer sum (and each stage's scale) is positive."""
    scales = coef[:-1] if model == "scale+stages+offset" else coef[:1]
    return bool(np.all(scales > 0))


def fit_calibration(
    archs: Sequence[Arch],
    raw_ms: np.ndarray,
    measured_ms: np.ndarray,
    n_layers: np.ndarray,
    params: np.ndarray | None = None,
    macs: np.ndarray | None = None,
    stage_ms: np.ndarray | None = None,
) -> Calibration:
    """Robust fit of `measured ≈ scale * raw [+ per_layer * layers | + per_mparam * params [+ per_gmac * MACs]] [+ offset]`,
    or, given per-stage sums of block latencies, of one scale per stage plus one for the rest.

    The candidate with the lowest leave-one-out relative error wins, so an extra term is kept only
    when it predicts networks outside the fit better (with 10 networks a needless term costs more
    than it explains).  Three-term models need `MIN_FOR_THREE_TERMS` networks, the four-term one
    `MIN_FOR_FOUR_TERMS`, per-stage scales `STAGE_NETWORKS_PER_TERM` per coefficient; with raw values
    that barely vary only the scale is fitted.
    """
    raw, measured, layers = np.asarray(raw_ms, float), np.asarray(measured_ms, float), np.asarray(n_layers, float)
    params = np.zeros_like(raw) if params is None else np.asarray(params, float)
    macs = np.zeros_like(raw) if macs is None else np.asarray(macs, float)
    stages = None if stage_ms is None else np.atleast_2d(np.asarray(stage_ms, float))
    if len(raw) < 2:
        raise LatencyError(f"calibration needs at least 2 networks, got {len(raw)}: pass --n 10 or more")
    if np.ptp(raw) < 1e-3 * raw.mean():
        candidates = ["scale"]
    elif len(raw) == 2:
        candidates = ["scale+offset"]  # the line through both
    else:
        candidates = ["scale", "scale+offset"]
        if len(raw) >= MIN_FOR_THREE_TERMS:
            candidates += [m for m, v in (("scale+layers+offset", layers), ("scale+params+offset", params)) if np.ptp(v) > 0]
        if len(raw) >= MIN_FOR_FOUR_TERMS and np.ptp(params) > 0 and np.ptp(macs) > 0:
            candidates.append("scale+macs+params+offset")
        if (
            stages is not None
            and len(raw) >= max(MIN_FOR_FOUR_TERMS, STAGE_NETWORKS_PER_TERM * (stages.shape[1] + 2))
            and (np.ptp(stages, axis=0) > 0).all()
        ):
            candidates.append("scale+stages+offset")
    design = {m: _design(m, raw, layers, params, macs, stages) for m in candidates}
    fits = {m: _robust_fit(design[m], measured) for m in candidates}
    # a network cannot get faster when its layers get slower: on a few noisy timings of near-equal networks
    # a fit can still tilt the scale (or a stage's scale) to <= 0, so such candidates are dropped
    candidates = [m for m in candidates if _scales_positive(m, fits[m])]
    if not candidates:  # the scale alone, a ratio of positive timings, is always positive
        design["scale"] = _design("scale", raw, layers, params, macs)
        fits["scale"], candidates = _robust_fit(design["scale"], measured), ["scale"]
    best = min(candidates, key=lambda m: _loo_error(design[m], measured)) if len(candidates) > 1 else candidates[0]
    fitted = fits[best]
    stage_scales: tuple[float, ...] = ()
    if best == "scale+stages+offset":
        stage_scales = tuple(float(v) for v in fitted[1:-1])
        fitted = np.array([fitted[0], fitted[-1]])
    coef = dict(zip(("raw", *(t for t in _MODELS[best] if t != "stages")), fitted))
    keys = tuple(a.key() for a in archs)
    return Calibration(
        float(coef["raw"]), float(coef.get("offset", 0.0)), keys, tuple(float(v) for v in raw), tuple(float(v) for v in measured),
        float(coef.get("layers", 0.0)), float(coef.get("params", 0.0)), float(coef.get("macs", 0.0)), stage_scales,
    )


def accuracy_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """How well predictions match and rank measurements (errors relative to the measurement)."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (predicted - measured) / measured
    return {
        "n": int(len(measured)),
        "mape": float(np.mean(np.abs(rel)) * 100),
        "within_5": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10": float(np.mean(np.abs(rel) <= 0.10)),
        "spearman": float(stats.spearmanr(predicted, measured).statistic) if len(measured) > 2 else float("nan"),
        "kendall_tau": float(stats.kendalltau(predicted, measured).statistic) if len(measured) > 2 else float("nan"),
        "bias_pct": float(np.mean(rel) * 100),
    }


def _backend_for(table: LatencyTable):
    if table.source != "measured":
        raise LatencyError(f"table for {table.device} was imported ({table.source}): it can only be calibrated on that device")
    return make_backend(table.runtime, table.threads, table.batch, table.precision, table.clock)


def calibrate_with(table: LatencyTable, archs: Sequence[Arch], measured_ms: np.ndarray) -> LatencyTable:
    """Fit the calibration from networks measured elsewhere (e.g. by a bundle on the device)."""
    raw = table.predict(archs, calibrated=False)
    params, macs = table.space.count_many(archs)
    return table.with_calibration(
        fit_calibration(archs, raw, np.asarray(measured_ms, float), table.n_layers(archs), params, macs, table.stage_ms(archs))
    )


def calibrate(
    table: LatencyTable, n: int = 10, seed: int = 1, time_per_net_ms: float = 300.0, rounds: int = 5, progress: bool = True
) -> LatencyTable:
    """Time `n` random whole networks locally and fit the table's calibration."""
    archs = sample_archs(table.space, table.resolutions, n, seed)
    with _backend_for(table) as backend:
        measured = time_networks(table.space, archs, backend, table.batch, time_per_net_ms, rounds, progress, table.statistic)
    return calibrate_with(table, archs, measured)


def validate_with(table: LatencyTable, archs: Sequence[Arch], measured_ms: np.ndarray) -> LatencyTable:
    """Validation section from held-out networks: raw and calibrated accuracy, plus the MACs proxy."""
    measured = np.asarray(measured_ms, float)
    used = set(table.calibration.archs) if table.calibration else set()
    if any(a.key() in used for a in archs):
        raise LatencyError("validation networks overlap the calibration networks: validate on held-out archs (another --seed)")
    raw = table.predict(archs, calibrated=False)
    section: dict[str, Any] = {"archs": [a.key() for a in archs], "measured_ms": measured.tolist(), "raw": accuracy_metrics(raw, measured)}
    if table.calibration is not None:
        section["calibrated"] = accuracy_metrics(table.predict(archs), measured)
    section["macs_proxy"] = _macs_proxy(table, archs, measured)
    return table.with_validation(section)


def _macs_proxy(table: LatencyTable, archs: Sequence[Arch], measured: np.ndarray) -> dict[str, Any]:
    """A linear fit of latency on MACs: fitted on the calibration networks when there are some."""
    _, macs = table.space.count_many(archs)
    cal = table.calibration
    if cal is not None and len(cal.archs) >= 2:
        cal_archs = [arch_from_key(table.space, k) for k in cal.archs]
        _, cal_macs = table.space.count_many(cal_archs)
        a, b = np.polyfit(cal_macs.astype(float), np.asarray(cal.measured_ms), 1)
        fitted_on = "calibration networks"
    else:
        a, b = np.polyfit(macs.astype(float), measured, 1)
        fitted_on = "validation networks (in-sample: no calibration)"
    return {**accuracy_metrics(a * macs + b, measured), "fitted_on": fitted_on}


def validate(
    table: LatencyTable, n: int = 100, seed: int = 2, time_per_net_ms: float = 300.0, rounds: int = 5, progress: bool = True
) -> LatencyTable:
    """Time `n` held-out random networks locally and record the table's accuracy on them."""
    exclude = table.calibration.archs if table.calibration else ()
    archs = sample_archs(table.space, table.resolutions, n, seed, exclude)
    with _backend_for(table) as backend:
        measured = time_networks(table.space, archs, backend, table.batch, time_per_net_ms, rounds, progress, table.statistic)
    return validate_with(table, archs, measured)


def calibrate_and_validate(
    table: LatencyTable,
    n_calibrate: int = 10,
    n_validate: int = 100,
    seed: int = 1,
    time_per_net_ms: float = 300.0,
    rounds: int = 5,
    progress: bool = True,
) -> LatencyTable:
    """Calibrate on `n_calibrate` networks and validate on `n_validate` held-out ones, timed together.

    All networks are timed in the same interleaved rounds, so a change in the machine's speed
    between two commands (another job starting, a frequency change) cannot pass for an error of
    the table: on a shared machine this is what makes the validation figures mean something.
    """
    cal = sample_archs(table.space, table.resolutions, n_calibrate, seed)
    val = sample_archs(table.space, table.resolutions, n_validate, seed + 1, exclude=[a.key() for a in cal])
    both = cal + val
    order = np.random.default_rng(seed).permutation(len(both))  # no set always timed first in a round
    with _backend_for(table) as backend:
        timed = time_networks(table.space, [both[i] for i in order], backend, table.batch, time_per_net_ms, rounds, progress, table.statistic)
    measured = np.empty_like(timed)
    measured[order] = timed
    table = calibrate_with(table, cal, measured[:n_calibrate])
    return validate_with(table, val, measured[n_calibrate:])


def plot_validation(table: LatencyTable, path: str | Path) -> Path:
    """Predicted-vs-measured scatter (raw and calibrated) with the ±5% band, as a PNG."""
    if not table.validation:
        raise LatencyError("the table has no validation section: run `ofa latency validate` first")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = [arch_from_key(table.space, k) for k in table.validation["archs"]]
    measured = np.asarray(table.validation["measured_ms"])
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    lo, hi = measured.min() * 0.9, measured.max() * 1.1
    grid = np.linspace(lo, hi, 2)
    ax.fill_between(grid, grid * 0.95, grid * 1.05, color="0.9", label="±5%")
    ax.plot(grid, grid, color="0.5", lw=1)
    ax.scatter(measured, table.predict(archs, calibrated=False), s=12, label="raw sum of layers")
    if table.calibration is not None:
        ax.scatter(measured, table.predict(archs), s=12, label="calibrated")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{table.device}: {table.runtime}, {table.threads} thr, batch {table.batch}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return Path(path)
