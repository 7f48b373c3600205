"""A latency lookup table: per-layer medians for one device and runtime, plus its calibration.

A network's predicted latency is `overhead + sum(entry - overhead)` over its layers (each layer was
timed as its own model, so each paid the runtime's per-call overhead once; the network pays it once),
then the calibration's `scale * raw + offset`, fitted on whole networks.  Prediction is a masked
gather-sum over `space.encode` codes, like `ofa.costs`: millions of archs per second.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latency.errors import LatencyError
from latency.keys import arch_layer_keys, slot_layer_grid
from ofa.costs import CostModel
from ofa.io import atomic_write_json
from ofa.space import Arch, SearchSpace, SpaceError

__all__ = ["Entry", "Calibration", "LatencyTable", "FORMAT", "VERSION", "table_path"]

FORMAT = "ofa-latency-table"
VERSION = 1


def table_path(device: str, work: str | Path = "work") -> Path:
    """Where `--device NAME` finds its table: `<work>/latency/NAME.json` (or NAME itself if a .json path)."""
    if device.endswith(".json"):
        return Path(device)
    return Path(work) / "latency" / f"{device}.json"


@dataclass(frozen=True)
class Entry:
    """One layer's measured latency (median of `count` runs, spread = half the inter-quartile range)."""

    median_ms: float
    spread_ms: float = 0.0
    count: int = 0
    p10_ms: float | None = None

    def value(self, statistic: str = "median") -> float:
        return self.p10_ms if statistic == "p10" and self.p10_ms is not None else self.median_ms

    def to_dict(self) -> dict[str, Any]:
        d = {"median_ms": self.median_ms, "spread_ms": self.spread_ms, "count": self.count}
        return d if self.p10_ms is None else {**d, "p10_ms": self.p10_ms}

    @staticmethod
    def from_dict(v: dict[str, Any]) -> "Entry":
        p10 = v.get("p10_ms")
        return Entry(float(v["median_ms"]), float(v.get("spread_ms", 0.0)), int(v.get("count", 0)), None if p10 is None else float(p10))


@dataclass(frozen=True)
class Calibration:
    """measured ≈ scale * raw + per_layer_ms * layers + per_mparam_ms * params/1e6 + per_gmac_ms * MACs/1e9 + offset_ms.

    With `stage_scales` (one per stage), `scale` multiplies only the layers outside the stages (stem,
    first block, head) and each stage's blocks get their own factor: a stage's blocks run at another
    speed inside a network than alone, and by how much depends on the stage's tensor sizes.
    Fitted on whole networks.  The per-layer term models what a network pays per layer beyond the
    isolated layer's time (launches on a GPU); the per-parameter term, weights that stay in cache
    when one layer is timed alone but stream from memory inside a whole network (CPUs); the MACs
    term, compute that runs at another speed inside a network than alone (with 20+ networks only).
    `model` names the fitted terms (chosen by leave-one-out error, see `fit_calibration`).
    """

    scale: float = 1.0
    offset_ms: float = 0.0
    archs: tuple[str, ...] = ()
    raw_ms: tuple[float, ...] = ()
    measured_ms: tuple[float, ...] = ()
    per_layer_ms: float = 0.0
    per_mparam_ms: float = 0.0
    per_gmac_ms: float = 0.0
    stage_scales: tuple[float, ...] = ()

    @property
    def model(self) -> str:
        """The fitted terms, e.g. "scale+params+offset" (a term that was not fitted is exactly 0)."""
        terms = {"stages": self.stage_scales, "layers": self.per_layer_ms, "macs": self.per_gmac_ms, "params": self.per_mparam_ms,
                 "offset": self.offset_ms}
        return "+".join(["scale", *(name for name, value in terms.items() if value)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scale": self.scale,
            "per_layer_ms": self.per_layer_ms,
            "per_mparam_ms": self.per_mparam_ms,
            "per_gmac_ms": self.per_gmac_ms,
            "stage_scales": list(self.stage_scales),
            "offset_ms": self.offset_ms,
            "n": len(self.archs),
            "archs": list(self.archs),
            "raw_ms": list(self.raw_ms),
            "measured_ms": list(self.measured_ms),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Calibration":
        return Calibration(
            float(d["scale"]), float(d["offset_ms"]), tuple(d.get("archs", ())), tuple(d.get("raw_ms", ())),
            tuple(d.get("measured_ms", ())), float(d.get("per_layer_ms", 0.0)), float(d.get("per_mparam_ms", 0.0)),
            float(d.get("per_gmac_ms", 0.0)), tuple(float(v) for v in d.get("stage_scales", ())),
        )

    @property
    def needs_costs(self) -> bool:
        """Whether `apply` needs the networks' parameter and MAC counts."""
        return bool(self.per_mparam_ms or self.per_gmac_ms)

    @property
    def needs_stages(self) -> bool:
        """Whether `apply` needs each network's per-stage sums of block latencies."""
        return bool(self.stage_scales)

    def apply(
        self,
        raw_ms: np.ndarray,
        n_layers: np.ndarray,
        params: np.ndarray | None = None,
        macs: np.ndarray | None = None,
        stage_ms: np.ndarray | None = None,
    ) -> np.ndarray:
        """Calibrated latency from the raw sums (and the counts or stage sums the fitted terms need)."""
        out = self.scale * np.asarray(raw_ms, float) + self.per_layer_ms * n_layers + self.offset_ms
        if self.stage_scales:
            if stage_ms is None:
                raise ValueError("this calibration has per-stage scales: pass the networks' per-stage block latencies")
            stage_ms = np.atleast_2d(np.asarray(stage_ms, float))
            if stage_ms.shape[1] != len(self.stage_scales):
                raise ValueError(f"stage sums have {stage_ms.shape[1]} stages, the calibration {len(self.stage_scales)}")
            out = out + stage_ms @ (np.asarray(self.stage_scales) - self.scale)
        for coef, counts, unit, what in ((self.per_mparam_ms, params, 1e6, "parameter"), (self.per_gmac_ms, macs, 1e9, "MAC")):
            if coef:
                if counts is None:
                    raise ValueError(f"this calibration has a per-{what} term: pass the networks' {what} counts")
                out = out + coef * np.asarray(counts, float) / unit
        return out


@dataclass(frozen=True)
class LatencyTable:
    """Per-layer latencies of one space on one device/runtime configuration."""

    space: SearchSpace
    device: str
    runtime: str
    runtime_version: str
    threads: int
    batch: int
    precision: str
    resolutions: tuple[int, ...]
    entries: dict[str, Entry]
    call_overhead_ms: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)
    complete: bool = True
    calibration: Calibration | None = None
    validation: dict[str, Any] | None = None
    source: str = "measured"  # or "mit-note10" for imported published tables
    statistic: str = "median"  # which entry value predicts: "median", or "p10" on a machine shared with other work
    clock: str = "wall"  # or "cpu": single-threaded CPU time, immune to other processes on a shared machine

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "space_fingerprint": self.space.fingerprint(),
            "space": self.space.to_dict(),
            "device": self.device,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "threads": self.threads,
            "batch": self.batch,
            "precision": self.precision,
            "statistic": self.statistic,
            "clock": self.clock,
            "host": self.host,
            "source": self.source,
            "resolutions": list(self.resolutions),
            "complete": self.complete,
            "call_overhead_ms": self.call_overhead_ms,
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "validation": self.validation,
            "entries": {k: e.to_dict() for k, e in self.entries.items()},
        }

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @staticmethod
    def from_dict(data: dict[str, Any], where: str = "latency table") -> "LatencyTable":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyError(f"{where} is not an ofa latency table (no \"format\": \"{FORMAT}\"); build one with `ofa latency build`")
        if int(data.get("version", 0)) > VERSION:
            raise LatencyError(f"{where} has format version {data['version']}, this ofa reads up to {VERSION}: upgrade ofa-deploy")
        try:
            space = SearchSpace.from_dict(data["space"])
            if space.fingerprint() != data["space_fingerprint"]:
                raise LatencyError(f"{where}: its space definition does not match its fingerprint (edited by hand?): rebuild the table")
            calibration = Calibration.from_dict(data["calibration"]) if data.get("calibration") else None
            if calibration is not None and calibration.stage_scales and len(calibration.stage_scales) != space.n_stages:
                raise LatencyError(
                    f"{where}: its calibration has {len(calibration.stage_scales)} stage scales, its space {space.n_stages} stages "
                    "(edited by hand?): re-run `ofa latency calibrate`"
                )
            return LatencyTable(
                space=space,
                device=str(data["device"]),
                runtime=str(data["runtime"]),
                runtime_version=str(data.get("runtime_version", "")),
                threads=int(data["threads"]),
                batch=int(data["batch"]),
                precision=str(data["precision"]),
                resolutions=tuple(int(r) for r in data["resolutions"]),
                entries={str(k): Entry.from_dict(v) for k, v in data["entries"].items()},
                call_overhead_ms=float(data.get("call_overhead_ms", 0.0)),
                host=dict(data.get("host") or {}),
                complete=bool(data.get("complete", True)),
                calibration=calibration,
                validation=data.get("validation"),
                source=str(data.get("source", "measured")),
                statistic=str(data.get("statistic", "median")),
                clock=str(data.get("clock", "wall")),
            )
        except (KeyError, TypeError, ValueError, SpaceError) as exc:
            if isinstance(exc, LatencyError):
                raise
            raise LatencyError(f"{where} is damaged: bad or missing field {exc}; rebuild it with `ofa latency build`") from None

    @staticmethod
    def load(path: str | Path, space: SearchSpace | None = None, batch: int | None = None, precision: str | None = None) -> "LatencyTable":
        """Read a table; refuse it if it belongs to another space, batch or precision than asked."""
        path = Path(path)
        if not path.is_file():
            raise LatencyError(f"latency table {path} does not exist: build it with `ofa latency build --out {path}` (or import one)")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise LatencyError(f"latency table {path} is not valid JSON ({exc}): rebuild it") from None
        table = LatencyTable.from_dict(data, f"latency table {path}")
        table.check(space, batch, precision, where=str(path))
        return table

    def check(
        self, space: SearchSpace | None = None, batch: int | None = None, precision: str | None = None, where: str = "latency table"
    ) -> None:
        """Raise a `LatencyError` if the table belongs to another space, batch size or precision than asked."""
        if space is not None and space.fingerprint() != self.space.fingerprint():
            if space.with_classes(self.space.n_classes).fingerprint() == self.space.fingerprint():
                raise LatencyError(
                    f"{where} was built for {self.space.n_classes} classes, the supernet has {space.n_classes}: rebuild it "
                    f"with the supernet's space, `ofa latency build --space work/supernet` (a supernet directory)"
                )
            raise LatencyError(
                f"{where} was built for space {self.space.name} (fingerprint {self.space.fingerprint()}), not {space.name} "
                f"({space.fingerprint()}): build a table for this space with `ofa latency build --space {space.name}`"
            )
        if batch is not None and batch != self.batch:
            raise LatencyError(f"{where} was timed at batch {self.batch}, not {batch}: build one with --batch {batch}")
        if precision is not None and precision != self.precision:
            raise LatencyError(f"{where} was timed in {self.precision}, not {precision}: build one with --precision {precision}")

    # ------------------------------------------------------------------ prediction
    @cached_property
    def _arrays(self) -> tuple:
        """(fixed[r], slot[s, k, e, r], depth choices, (block, stage) index of each slot); NaN = not in the table."""
        space, over = self.space, self.call_overhead_ms
        nk, ne, nr = len(space.kernel_sizes), len(space.expand_ratios), len(space.resolutions)
        fixed = np.full(nr, np.nan)
        slot = np.full((space.n_slots, nk, ne, nr), np.nan)
        covered = set(self.resolutions)
        for ri, res in enumerate(space.resolutions):
            if res not in covered:
                continue
            fixed_layers, grid = slot_layer_grid(space, res)
            fixed[ri] = over + sum(self._lookup(layer.key, res) - over for layer in fixed_layers)
            for s in range(space.n_slots):
                for ki in range(nk):
                    for ei in range(ne):
                        slot[s, ki, ei, ri] = self._lookup(grid[s][ki][ei].key, res) - over
        block_index = np.arange(space.n_slots) % space.max_depth
        stage_index = np.arange(space.n_slots) // space.max_depth
        return fixed, slot, np.array(space.depths), (block_index, stage_index)

    def _lookup(self, key: str, resolution: int) -> float:
        """An entry's median: `r<res>/<key>` (tables measured per input resolution, e.g. MIT's) before `<key>`."""
        entry = self.entries.get(f"r{resolution}/{key}") or self.entries.get(key)
        return entry.value(self.statistic) if entry is not None else np.nan

    def predict_codes(self, codes: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Latency in ms of archs given as `space.encode` codes [N, 2*slots + stages + 1]."""
        codes = np.atleast_2d(np.asarray(codes, dtype=np.int64))
        space = self.space
        lat, active, per_slot = self._raw_parts(codes)
        if calibrated and self.calibration is not None:
            cal = self.calibration
            params, macs = CostModel.for_space(space).count_codes(codes) if cal.needs_costs else (None, None)
            stage_ms = self._stage_sums(per_slot) if cal.needs_stages else None
            lat = cal.apply(lat, 3 + active.sum(axis=1), params, macs, stage_ms)
        return lat

    def _raw_parts(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw sum per arch, active-slot mask, per-slot latency with 0 for inactive slots); slots are stage-major."""
        s, n_stages = self.space.n_slots, self.space.n_stages
        if codes.shape[1] != 2 * s + n_stages + 1:
            raise LatencyError(f"codes have {codes.shape[1]} columns, space {self.space.name} encodes archs in {2 * s + n_stages + 1}")
        fixed, slot, depths, (block_index, stage_index) = self._arrays
        k_idx, e_idx, r_idx = codes[:, :s], codes[:, s : 2 * s], codes[:, -1]
        active = block_index[None, :] < depths[codes[:, 2 * s : 2 * s + n_stages]][:, stage_index]
        per_slot = np.where(active, slot[np.arange(s)[None, :], k_idx, e_idx, r_idx[:, None]], 0.0)
        lat = per_slot.sum(axis=1) + fixed[r_idx]
        if np.isnan(lat).any():
            self._raise_missing(codes[int(np.flatnonzero(np.isnan(lat))[0])])
        return lat, active, per_slot

    def stage_ms(self, archs: Sequence[Arch]) -> np.ndarray:
        """Uncalibrated sum of each stage's block latencies, [N, stages] (what per-stage calibration scales)."""
        return self._stage_sums(self._raw_parts(self.space.encode(list(archs)))[2])

    def _stage_sums(self, per_slot: np.ndarray) -> np.ndarray:
        return per_slot.reshape(len(per_slot), self.space.n_stages, self.space.max_depth).sum(axis=2)

    def predict(self, archs: Sequence[Arch] | Arch, calibrated: bool = True) -> np.ndarray:
        """Latency in ms of each arch (calibrated if the table has a calibration)."""
        if isinstance(archs, Arch):
            archs = [archs]
        return self.predict_codes(self.space.encode(list(archs)), calibrated)

    def _raise_missing(self, code: np.ndarray) -> None:
        arch = self.space.decode(code[None, :])[0]
        if arch.resolution not in self.resolutions:
            raise LatencyError(
                f"resolution {arch.resolution} is not in latency table for {self.device} (it has {', '.join(map(str, self.resolutions))}): "
                "pick one of those or rebuild the table with --resolutions"
            )
        missing = [k for k in arch_layer_keys(self.space, arch) if np.isnan(self._lookup(k, arch.resolution))]
        hint = "resume the build (rerun the same `ofa latency build`)" if not self.complete else "the table does not cover this layer"
        raise LatencyError(f"latency table for {self.device} has no entry {missing[0]} (needed by {arch}): {hint}")

    def n_layers(self, archs: Sequence[Arch]) -> np.ndarray:
        """Layers per network (stem, first block, active blocks, head)."""
        return np.array([3 + len(a.active_slots(self.space.max_depth)) for a in archs])

    def with_calibration(self, calibration: Calibration | None) -> "LatencyTable":
        return replace(self, calibration=calibration, validation=None)

    def with_validation(self, validation: dict[str, Any] | None) -> "LatencyTable":
        return replace(self, validation=validation)

    def summary(self) -> str:
        v = self.validation or {}
        cal = v.get("calibrated") or v.get("raw")
        val = f"validated on {cal['n']}: {cal['within_5'] * 100:.1f}% within ±5%, tau {cal['kendall_tau']:.3f}" if cal else "not validated"
        state = "" if self.complete else " [INCOMPLETE: rerun build to resume]"
        clock = " (cpu clock)" if self.clock == "cpu" else ""
        return (
            f"{self.device}: {self.runtime} {self.runtime_version}, {self.threads} thread(s), batch {self.batch}, {self.precision}, "
            f"{self.statistic}{clock}, "
            f"space {self.space.name}, {len(self.entries)} entries, {'calibrated' if self.calibration else 'uncalibrated'}, {val}{state}"
        )
