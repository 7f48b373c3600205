"""Writing a search's outputs: pareto.json, chosen.json, pareto.png, report.md (each atomically)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ofa.io import atomic_write, atomic_write_json, atomic_write_text
from ofa.search.front import SearchResult
from ofa.space import Arch

__all__ = ["Verified", "RunInfo", "format_metric", "write_outputs", "summary_table"]

OUTPUT_FORMAT = "ofa-specialized/1"


@dataclass(frozen=True)
class Verified:
    """Predicted vs measured figures of one top-k candidate (`--verify`)."""

    arch: Arch
    predicted: dict[str, float]
    measured_top1: float | None
    measured_latency_ms: dict[str, float]  # device -> ms (empty when not measured here)
    meets_budgets: bool | None  # measured latency within every budget (None: not measured)


@dataclass(frozen=True)
class RunInfo:
    """What a person needs to trust or reproduce the result: inputs, sources and their quality."""

    name: str
    command: str
    budgets: dict[str, float]  # metric -> upper bound
    accuracy_source: str
    sources: tuple[str, ...] = ()  # one line per table/predictor used, with validation figures
    verified: tuple[Verified, ...] = ()
    verify_note: str = ""
    started_at: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def format_metric(name: str, value: float) -> str:
    if name == "accuracy":
        return f"{value * 100:.2f}%" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    if name.startswith("latency:"):
        return f"{value:.3f} ms"
    from ofa.units import format_count

    return format_count(value)


def _row_dict(result: SearchResult, row: int) -> dict:
    return {"arch": result.archs[row].to_dict(), "metrics": result.metrics_of(row)}


def _budgets(result: SearchResult) -> dict[str, float]:
    return {c.metric: c.upper for c in result.constraints}


def write_outputs(directory: str | Path, result: SearchResult, chosen: int, info: RunInfo) -> Path:
    """Write pareto.json, chosen.json (front row `chosen`), pareto.png and report.md."""
    directory = Path(directory)
    space = result.space
    header = {
        "format": OUTPUT_FORMAT,
        "name": info.name,
        "space": space.name,
        "fingerprint": space.fingerprint(),
        "algorithm": result.algorithm,
        "objectives": list(result.objectives),
        "budgets": _budgets(result),
        "accuracy_source": info.accuracy_source,
    }
    atomic_write_json(directory / "pareto.json", {**header, "archs": [_row_dict(result, i) for i in range(len(result.codes))]})
    chosen_doc = {**header, **_row_dict(result, chosen)}
    arch = result.archs[chosen]
    for v in info.verified:
        if v.arch == arch:
            chosen_doc["verified"] = {"measured_top1": v.measured_top1, "measured_latency_ms": v.measured_latency_ms, "meets_budgets": v.meets_budgets}
    atomic_write_json(directory / "chosen.json", chosen_doc)
    _write_plot(directory / "pareto.png", result, chosen)
    atomic_write_text(directory / "report.md", _report(result, chosen, info))
    return directory


def _plot_axes(result: SearchResult) -> tuple[str, str]:
    """x: first latency (else the first cost objective); y: accuracy (else the first objective)."""
    names = result.metric_names
    lat = [n for n in names if n.startswith("latency:")]
    costs = [o for o in result.objectives if o != "accuracy"]
    x = lat[0] if lat else (costs[0] if costs else ("macs" if "macs" in names else names[-1]))
    y = "accuracy" if "accuracy" in names else result.objectives[0]
    return x, y


def _write_plot(path: Path, result: SearchResult, chosen: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = _plot_axes(result)
    xi, yi = result.metric_names.index(x), result.metric_names.index(y)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    explored = result.explored_values
    if explored.size:
        ax.scatter(explored[:, xi], explored[:, yi], s=4, c="0.8", label=f"explored ({len(explored)})", rasterized=True)
    if len(result.codes):
        order = np.argsort(result.values[:, xi])
        # a 2-objective front is a staircase; with more objectives its projection is a cloud
        style = ".-" if set(result.objectives) == {x, y} else "."
        ax.plot(result.values[order, xi], result.values[order, yi], style, color="tab:blue", ms=5, lw=1, label=f"Pareto front ({len(order)})")
        ax.scatter([result.values[chosen, xi]], [result.values[chosen, yi]], marker="*", s=220, c="tab:red", zorder=5, label="chosen")
    for c in result.constraints:
        if c.metric == x:
            ax.axvline(c.upper, color="tab:red", ls="--", lw=1, label=f"budget {format_metric(x, c.upper)}")
        elif c.metric == y:
            ax.axhline(c.upper, color="tab:red", ls="--", lw=1)
    ax.set_xlabel(x + (" (ms)" if x.startswith("latency:") else ""))
    ax.set_ylabel(y if y != "accuracy" or result.column("accuracy").max() <= 1.0 else "accuracy proxy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{result.space.name}: {result.algorithm}, {result.n_evaluations} evaluations")
    fig.tight_layout()

    def save(tmp: Path) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        tmp.write_bytes(buf.getvalue())

    try:
        atomic_write(path, save)
    finally:
        plt.close(fig)


def summary_table(result: SearchResult, chosen: int, max_rows: int = 12) -> str:
    """Text table of (an even sample of) the front, the chosen row marked with `*`."""
    n = len(result.codes)
    rows = sorted(set(np.linspace(0, n - 1, min(n, max_rows)).round().astype(int).tolist()) | {chosen}) if n else []
    names = list(result.metric_names)
    table = [[" ", *names, "arch"]]
    for r in rows:
        table.append(["*" if r == chosen else " ", *[format_metric(m, result.values[r, i]) for i, m in enumerate(names)], str(result.archs[r])])
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]) - 1)]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in table]
    return "\n".join(lines)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _report(result: SearchResult, chosen: int, info: RunInfo) -> str:
    chosen_arch = result.archs[chosen]
    space = result.space
    budgets = ", ".join(f"{m} <= {format_metric(m, v)}" for m, v in info.budgets.items()) or "none"
    lines = [
        f"# Specialized subnet: {info.name}",
        "",
        "## Inputs",
        "",
        f"- command: `{info.command}`",
        f"- space: {space.name} (fingerprint {space.fingerprint()})",
        f"- budgets: {budgets}",
        f"- objectives: {', '.join(result.objectives)}",
        f"- accuracy: {info.accuracy_source}",
        f"- algorithm: {result.algorithm}, seed {result.seed}",
        *[f"- {k}: {v}" for k, v in info.extra.items()],
        "",
        "## Tables and predictors used",
        "",
        *([f"- {s}" for s in info.sources] or ["- exact parameter and MAC counts only"]),
        "",
        "## Search",
        "",
        f"- started: {info.started_at}" if info.started_at else "",
        f"- time: {result.seconds:.2f} s for {result.n_evaluations} evaluations "
        f"({result.n_unique} distinct archs, duplicate rate {result.duplicate_rate:.1%})",
        f"- Pareto front: {len(result.codes)} archs within all budgets (pareto.json, pareto.png)",
        "",
        "## Chosen",
        "",
        f"`{chosen_arch}`",
        "",
        ("Chosen as the best measured top-1 among the verified candidates whose measured latency meets the budgets.\n\n"
         if any(v.meets_budgets is not False for v in info.verified) else "")
        + _md_table(["metric", "predicted"], [[m, format_metric(m, v)] for m, v in result.metrics_of(chosen).items()]),
        "",
    ]
    if info.verified or info.verify_note:
        lines += ["## Verification (predicted vs measured)", ""]
        if info.verified:
            devices = sorted({d for v in info.verified for d in v.measured_latency_ms} | {m[8:] for m in info.budgets if m.startswith("latency:")})
            header = ["arch", "predicted acc", "measured top-1"] + [f"{d}: predicted / measured ms" for d in devices] + ["meets budgets"]
            rows = []
            for v in info.verified:
                lat = []
                for d in devices:
                    pred = v.predicted.get(f"latency:{d}")
                    meas = v.measured_latency_ms.get(d)
                    lat.append(f"{'-' if pred is None else f'{pred:.3f}'} / {'-' if meas is None else f'{meas:.3f}'}")
                acc = v.predicted.get("accuracy")
                rows.append(
                    [f"`{v.arch}`", "-" if acc is None else format_metric("accuracy", acc),
                     "-" if v.measured_top1 is None else f"{v.measured_top1 * 100:.2f}%", *lat,
                     {None: "not measured", True: "yes", False: "no"}[v.meets_budgets]]
                )
            lines += [_md_table(header, rows), ""]
        if info.verify_note:
            lines += [info.verify_note, ""]
    return "\n".join(line for line in lines if line is not None) + "\n"
