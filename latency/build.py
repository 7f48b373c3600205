"""Building a latency table: time every distinct layer of a space on one runtime, resumably.

Layers are handled in chunks: export and load a chunk, time it in interleaved rounds, write the
partial table atomically.  Rerunning the same build skips the entries already in the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn
from tqdm import tqdm

from latency.errors import LatencyError
from latency.keys import Layer, space_layers
from latency.runtimes import Backend, export_onnx, fill_weights, fix_input_shape, host_description, make_backend, trace_onnx
from latency.table import Entry, LatencyTable
from latency.timing import STATISTICS, Stats, time_interleaved
from ofa.layers import build_static
from ofa.space import Arch, SearchSpace

__all__ = ["BuildSettings", "build_table", "time_networks", "measure_overhead"]

log = logging.getLogger("ofa")


@dataclass(frozen=True)
class BuildSettings:
    """What to time and how hard: `time_per_entry_ms` is split over `rounds` interleaved rounds."""

    runtime: str = "ort-cpu"
    device: str = "local"
    threads: int = 1
    batch: int = 1
    precision: str = "fp32"
    resolutions: tuple[int, ...] | None = None  # None: all of the space's
    time_per_entry_ms: float = 60.0
    rounds: int = 3
    chunk: int = 64
    statistic: str = "median"  # "p10" on a machine where other processes compete for the CPU
    clock: str = "wall"  # "cpu": single-threaded CPU time (threads=1), immune to other processes


class NoopModel(nn.Module):
    """The smallest model: its latency is the runtime's per-call overhead."""

    def forward(self, x):
        return x + 1.0


def prepare_runner(backend: Backend, module: nn.Module, input_shape: tuple[int, ...]):
    module = fill_weights(module)
    onnx_model = export_onnx(module, input_shape) if backend.needs_onnx else None
    return backend.prepare(module, onnx_model, input_shape)


def _prepare_layers(backend: Backend, space: SearchSpace, layers: list[Layer], batch: int, traced: dict[tuple, object]) -> list:
    """Runners for layers; a layer config is traced once (kept in `traced`) and reused at every resolution."""
    runners = []
    for layer in layers:
        module = fill_weights(layer.module(space))
        shape = (batch, *layer.input_chw)
        onnx_model = None
        if backend.needs_onnx:
            if layer.source not in traced:
                traced[layer.source] = trace_onnx(module, batch, layer.input_chw[0], probe=min(layer.input_chw[1], 8))
            onnx_model = fix_input_shape(traced[layer.source], shape)
        runners.append(backend.prepare(module, onnx_model, shape))
    return runners


def measure_overhead(backend: Backend, time_ms: float = 150.0, statistic: str = "median") -> float:
    """Per-call overhead of the runtime (latency of a one-element model)."""
    runner = prepare_runner(backend, NoopModel(), (1, 1, 1, 1))
    return time_interleaved([runner], rounds=3, per_round_ms=time_ms / 3, max_runs=2000)[0].value(statistic)


def check_resolutions(space: SearchSpace, resolutions: Sequence[int] | None) -> tuple[int, ...]:
    if not resolutions:
        return tuple(space.resolutions)
    bad = [r for r in resolutions if r not in space.resolutions]
    if bad:
        raise LatencyError(
            f"resolution(s) {', '.join(map(str, bad))} not in space {space.name} "
            f"({space.resolutions[0]}..{space.resolutions[-1]}, {len(space.resolutions)} values)"
        )
    return tuple(sorted(set(int(r) for r in resolutions)))


def _resume(out: Path, fresh: LatencyTable) -> LatencyTable:
    """The partial table in `out` if it was started with the same settings, else an error."""
    old = LatencyTable.load(out)
    same = (
        old.space.fingerprint() == fresh.space.fingerprint()
        and (old.runtime, old.threads, old.batch, old.precision, old.clock)
        == (fresh.runtime, fresh.threads, fresh.batch, fresh.precision, fresh.clock)
        and set(fresh.resolutions) <= set(old.resolutions) | set(fresh.resolutions)
    )
    if not same:
        raise LatencyError(
            f"{out} holds a table with other settings ({old.runtime}, {old.threads} threads, batch {old.batch}, {old.precision}, "
            f"space {old.space.name}): pass --force to overwrite it or choose another --out"
        )
    entries = dict(old.entries)
    resolutions = tuple(sorted(set(old.resolutions) | set(fresh.resolutions)))
    return replace(fresh, entries=entries, resolutions=resolutions, call_overhead_ms=old.call_overhead_ms, complete=False)


def build_table(
    space: SearchSpace, settings: BuildSettings, out: str | Path | None = None, progress: bool = True, force: bool = False
) -> LatencyTable:
    """Time every layer of `space` at the chosen resolutions; save to `out` as it goes (resumable)."""
    resolutions = check_resolutions(space, settings.resolutions)
    if settings.statistic not in STATISTICS:
        raise LatencyError(f"statistic {settings.statistic!r} is not one of {', '.join(STATISTICS)}")
    with make_backend(settings.runtime, settings.threads, settings.batch, settings.precision, settings.clock) as backend:
        table = LatencyTable(
            space=space, device=settings.device, runtime=settings.runtime, runtime_version=backend.version(),
            threads=settings.threads, batch=settings.batch, precision=settings.precision, resolutions=resolutions,
            entries={}, host=host_description(), complete=False, statistic=settings.statistic, clock=settings.clock,
        )
        out = Path(out) if out is not None else None
        if out is not None and out.exists() and not force:
            table = _resume(out, table)
        layers = [layer for layer in space_layers(space, resolutions) if layer.key not in table.entries]
        if not layers:
            log.info("%s: all %d entries already timed", out, len(table.entries))
        if not table.call_overhead_ms:
            table = replace(table, call_overhead_ms=measure_overhead(backend, statistic=settings.statistic))
        entries = dict(table.entries)
        traced: dict[tuple, object] = {}
        bar = tqdm(total=len(layers) * settings.rounds, desc=f"latency {settings.device}", unit="step", disable=not progress, leave=False)
        try:
            for start in range(0, len(layers), settings.chunk):
                chunk = layers[start : start + settings.chunk]
                stats = _time_layers(backend, space, chunk, settings, bar, traced)
                entries.update({layer.key: Entry(s.median_ms, s.spread_ms, s.count, s.p10_ms) for layer, s in zip(chunk, stats)})
                table = replace(table, entries=dict(entries))
                if out is not None:
                    table.save(out)
        finally:
            bar.close()
    table = replace(table, complete=True)
    if out is not None:
        table.save(out)
    return table


def _time_layers(backend: Backend, space: SearchSpace, layers: list[Layer], settings: BuildSettings, bar, traced: dict) -> list[Stats]:
    runners = _prepare_layers(backend, space, layers, settings.batch, traced)
    return time_interleaved(runners, rounds=settings.rounds, per_round_ms=settings.time_per_entry_ms / settings.rounds, on_step=bar.update)


def time_networks(
    space: SearchSpace,
    archs: Sequence[Arch],
    backend: Backend,
    batch: int = 1,
    time_per_net_ms: float = 300.0,
    rounds: int = 5,
    progress: bool = True,
    statistic: str = "median",
) -> np.ndarray:
    """Latency (ms; median or p10) of each whole network, timed interleaved on `backend`."""
    runners = []
    for arch in tqdm(archs, desc="export networks", disable=not progress, leave=False):
        runners.append(prepare_runner(backend, build_static(space, arch), (batch, space.in_channels, arch.resolution, arch.resolution)))
    with tqdm(total=len(runners) * rounds, desc="time networks", disable=not progress, leave=False) as bar:
        stats = time_interleaved(runners, rounds=rounds, per_round_ms=time_per_net_ms / rounds, on_step=bar.update)
    return np.array([s.value(statistic) for s in stats])
