"""The samples file: append-only JSON lines of (arch, measured accuracy) from one supernet.

Line 1 is a header (space definition, supernet fingerprint, evaluation protocol); every further
line is one evaluated subnet.  Appending one line per subnet means an interrupted collection
loses at most the subnet being evaluated, and a person can read or `grep` the file.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ofa.errors import OfaError
from ofa.space import Arch, SearchSpace

__all__ = ["Sample", "SamplesHeader", "SampleFile", "SamplesError", "read_samples", "append_line", "repair_tail", "FORMAT"]

FORMAT = "ofa-samples/1"
log = logging.getLogger(__name__)


class SamplesError(OfaError, ValueError):
    """A samples file is missing, corrupt, or comes from another supernet or protocol."""


@dataclass(frozen=True)
class SamplesHeader:
    """What every sample of a file shares: the space, the supernet, how accuracy was measured."""

    space: SearchSpace
    supernet: str  # fingerprint of the supernet's weights (see predictors.collect.supernet_fingerprint)
    data: str  # dataset spec the validation split came from
    n_calib: int  # images used for BatchNorm re-calibration
    calib_split: str  # "val" or "train"
    eval_split: str  # always "val": the test split is never used to build the predictor
    n_eval: int  # images in the evaluation split

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "space": self.space.to_dict(),
            "space_fingerprint": self.space.fingerprint(),
            "supernet": self.supernet,
            "data": self.data,
            "n_calib": self.n_calib,
            "calib_split": self.calib_split,
            "eval_split": self.eval_split,
            "n_eval": self.n_eval,
        }

    @staticmethod
    def from_dict(data: dict[str, Any], source: str) -> "SamplesHeader":
        if data.get("format") != FORMAT:
            raise SamplesError(f"{source} is not a samples file (first line has no format {FORMAT!r}); pass the file `ofa predictor collect` wrote")
        try:
            space = SearchSpace.from_dict(data["space"])
            header = SamplesHeader(space, str(data["supernet"]), str(data["data"]), int(data["n_calib"]),
                                   str(data["calib_split"]), str(data["eval_split"]), int(data["n_eval"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SamplesError(f"{source}: corrupt header ({exc!r}); collect the samples again") from None
        if data.get("space_fingerprint") != space.fingerprint():
            raise SamplesError(f"{source}: header space fingerprint does not match its space; the file was edited or is corrupt")
        return header

    def mismatch(self, other: "SamplesHeader") -> str | None:
        """A description of the first difference that makes samples incomparable, else None."""
        if self.space.fingerprint() != other.space.fingerprint():
            return f"space {self.space.name!r} ({self.space.fingerprint()}) vs {other.space.name!r} ({other.space.fingerprint()})"
        if self.supernet != other.supernet:
            return f"supernet {self.supernet} vs {other.supernet} (different weights)"
        for field in ("data", "n_calib", "calib_split", "eval_split", "n_eval"):
            if getattr(self, field) != getattr(other, field):
                return f"{field} {getattr(self, field)!r} vs {getattr(other, field)!r}"
        return None


@dataclass(frozen=True)
class Sample:
    """One evaluated subnet."""

    arch: Arch
    top1: float  # fraction in [0, 1], on the validation split
    loss: float
    params: int
    macs: int
    seconds: float  # wall time of re-calibration + evaluation
    supernet: str  # fingerprint, repeated on every line so a stray line from another file is caught

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "resolution": self.arch.resolution,
            "top1": self.top1,
            "loss": self.loss,
            "params": self.params,
            "macs": self.macs,
            "seconds": round(self.seconds, 4),
            "supernet": self.supernet,
        }

    @staticmethod
    def from_dict(data: dict[str, Any], space: SearchSpace) -> "Sample":
        return Sample(Arch.from_dict(data["arch"], space), float(data["top1"]), float(data["loss"]), int(data["params"]),
                      int(data["macs"]), float(data.get("seconds", 0.0)), str(data["supernet"]))


@dataclass(frozen=True)
class SampleFile:
    header: SamplesHeader
    samples: tuple[Sample, ...]

    @property
    def space(self) -> SearchSpace:
        return self.header.space

    def keys(self) -> set[str]:
        return {s.arch.key() for s in self.samples}


def read_samples(path: str | Path) -> SampleFile:
    """Parse a samples file; a torn last line (interrupted write) is ignored, anything else corrupt is refused."""
    path = Path(path)
    if not path.is_file():
        raise SamplesError(f"samples file {path} does not exist: create it with `ofa predictor collect --out {path}`")
    lines = path.read_text().split("\n")
    torn = lines[-1] != ""  # a complete file ends with a newline
    if torn:
        log.warning("%s: ignoring an incomplete last line (interrupted write)", path)
    lines = lines[:-1]
    if not lines:
        raise SamplesError(f"samples file {path} is empty; collect samples with `ofa predictor collect`")
    header = SamplesHeader.from_dict(_parse(lines[0], path, 1), str(path))
    samples, seen = [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        data = _parse(line, path, number)
        if data.get("supernet") != header.supernet:
            raise SamplesError(
                f"{path} line {number}: sample from supernet {data.get('supernet')}, the file's header says {header.supernet}; "
                "samples from different supernets cannot be mixed: collect into a new file"
            )
        try:
            sample = Sample.from_dict(data, header.space)
        except (KeyError, TypeError, ValueError) as exc:
            raise SamplesError(f"{path} line {number}: not a valid sample ({exc}); remove the line or collect again") from None
        if sample.arch.key() in seen:  # tolerated (e.g. two files concatenated), never counted twice
            continue
        seen.add(sample.arch.key())
        samples.append(sample)
    return SampleFile(header, tuple(samples))


def _parse(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SamplesError(f"{path} line {number} is not valid JSON ({exc.msg}); remove the line or collect again") from None
    if not isinstance(data, dict):
        raise SamplesError(f"{path} line {number} is not a JSON object; remove the line or collect again")
    return data


def repair_tail(path: Path) -> None:
    """Cut an incomplete last line (left by a kill mid-write) so the next append starts a fresh line."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        log.warning("%s: dropping an incomplete last line (interrupted write)", path)
        fh.truncate(cut)


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single O_APPEND write (safe with concurrent appenders), then fsync."""
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file(path: Path, header: SamplesHeader) -> bool:
    """Write a header-only file unless `path` exists (atomic, no overwrite); True if this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(header.to_dict()) + "\n")
    try:
        os.link(tmp, path)  # fails if another process created it first
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
