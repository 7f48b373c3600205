"""The resumable state of a training run, and the run directory that holds it.

    OUT/run/run.json     what the run is (space, data, schedule, sampler, seed, world size): a resume
                         with other settings is refused
    OUT/run/state.pt     model, optimizer, RNG states, phase and step (tensors and plain values only,
                         written atomically: a half-written checkpoint is never read)
    OUT/run/teacher.pt   the frozen teacher, written once when the teacher phase ends
    OUT/run/budget.json  with a time budget (`minutes`): the epoch_scale fitted on this machine, kept for resumes
    OUT/supernet/        the supernet (`Supernet.save`), refreshed at every phase end
    OUT/train_log.jsonl  one line per optimizer step
    OUT/train_report.json  per-phase accuracies of the min and max subnets, throughput, timing
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ofa.errors import OfaError
from ofa.io import atomic_torch_save, atomic_write_json

__all__ = ["RunPaths", "Progress", "TrainStateError", "capture_rng", "restore_rng", "save_state", "load_state", "check_run_dir"]

STATE_FORMAT = "ofa-train-state/1"
RUN_FORMAT = "ofa-train-run/1"


class TrainStateError(OfaError, ValueError):
    """The output directory holds another run, or its checkpoint cannot be used."""


@dataclass(frozen=True)
class RunPaths:
    out: Path

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def run_json(self) -> Path:
        return self.run / "run.json"

    @property
    def state(self) -> Path:
        return self.run / "state.pt"

    @property
    def teacher(self) -> Path:
        return self.run / "teacher.pt"

    @property
    def budget(self) -> Path:
        return self.run / "budget.json"

    @property
    def supernet(self) -> Path:
        return self.out / "supernet"

    @property
    def log(self) -> Path:
        return self.out / "train_log.jsonl"

    @property
    def report(self) -> Path:
        return self.out / "train_report.json"


@dataclass(frozen=True)
class Progress:
    """Where a run stands: `step` optimizer steps of phase `phase` are done (phase == n_phases: finished)."""

    phase: int = 0
    step: int = 0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "step": self.step, "elapsed_s": self.elapsed_s}


def capture_rng() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss),
        },
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def save_state(paths: RunPaths, progress: Progress, model: dict[str, torch.Tensor], optimizer: dict[str, Any] | None) -> None:
    """One atomic file: a kill at any moment leaves either the previous or the new checkpoint."""
    atomic_torch_save(
        paths.state,
        {
            "format": STATE_FORMAT,
            "progress": progress.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.items()},
            "optimizer": optimizer,
            "rng": capture_rng(),
        },
    )


def load_state(paths: RunPaths) -> dict[str, Any] | None:
    """The last checkpoint, or None if the run has none yet."""
    if not paths.state.is_file():
        return None
    try:
        state = torch.load(paths.state, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainStateError(f"{paths.state} is unreadable ({type(exc).__name__}): pass --force to start the run over") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainStateError(f"{paths.state} is not a training checkpoint of this version: pass --force to start the run over")
    p = state["progress"]
    state["progress"] = Progress(int(p["phase"]), int(p["step"]), float(p["elapsed_s"]))
    return state


def check_run_dir(paths: RunPaths, run_config: dict[str, Any], *, resume: bool, force: bool) -> bool:
    """Decide whether to resume (True) or start fresh (False); refuse another run's directory.

    `run_config` holds what must match for a resume: space, data, schedule, sampler, seed, world size.
    """
    existing = _read_run_json(paths) if paths.run_json.is_file() else None
    if existing is None:
        if paths.run.exists() and not force:
            raise TrainStateError(f"{paths.run} exists but holds no run.json: pass --force to start over there, or choose another --out")
        if paths.supernet.exists() and not force:
            raise TrainStateError(
                f"--out {paths.out} already holds a supernet not made by a training run there: "
                "choose another --out or pass --force to overwrite it"
            )
        if resume:
            raise TrainStateError(f"nothing to resume in {paths.out}: drop --resume to start a new run")
        return False
    if force:
        return False
    old = existing["config"]
    for key, what in (("space", "space"), ("data", "dataset")):
        if old.get(key) != run_config[key]:
            raise TrainStateError(
                f"--out {paths.out} holds a run with another {what} ({_short(old.get(key))}, not {_short(run_config[key])}): "
                "choose another --out or pass --force to overwrite it"
            )
    diffs = _diff(old, run_config)
    if diffs:
        shown = "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
        raise TrainStateError(
            f"cannot resume the run in {paths.out}: its settings differ ({shown}); pass the same options, or --force to start over"
        )
    return True


def start_run_dir(paths: RunPaths, run_config: dict[str, Any], fresh: bool) -> None:
    """Rank 0: clear an old run when starting fresh, write run.json, drop temporary files of a killed write."""
    if fresh:
        for path in (paths.run, paths.supernet):
            if path.exists():
                shutil.rmtree(path)
        for path in (paths.log, paths.report):
            path.unlink(missing_ok=True)
        atomic_write_json(paths.run_json, {"format": RUN_FORMAT, "config": run_config})
    for tmp in list(paths.run.glob(".*.tmp")) + list(paths.out.glob(".*.tmp")):
        tmp.unlink(missing_ok=True)


def _read_run_json(paths: RunPaths) -> dict[str, Any]:
    try:
        data = json.loads(paths.run_json.read_text())
        if data.get("format") != RUN_FORMAT or not isinstance(data.get("config"), dict):
            raise ValueError("unknown format")
        return data
    except (ValueError, OSError) as exc:
        raise TrainStateError(f"{paths.run_json} is corrupt ({exc}): pass --force to start the run over") from None


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if k in ("name", "fingerprint", "source"))
    return str(value)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += _diff(a, b, f"{prefix}{i}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} was {old!r}, now {new!r}"]
