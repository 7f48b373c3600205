"""`export_report.json` and the terminal table: per format, size, parity, accuracy and latency."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofa.io import atomic_write_json

from export.onnx_export import Parity
from export.timing import LatencyStats

__all__ = ["FormatResult", "ExportReport", "write_report", "format_table", "REPORT_FILE"]

REPORT_FILE = "export_report.json"


@dataclass(frozen=True)
class FormatResult:
    """One exported file and how it behaves on this machine."""

    format: str  # torch | onnx | ort-int8 | tensorrt
    precision: str  # fp32 | fp16 | int8
    runtime: str  # e.g. "pytorch eager cpu", "onnxruntime cpu"
    file: str  # relative to the export directory
    size_bytes: int
    parity: Parity | None = None  # against the reference named in parity_reference
    parity_reference: str | None = None
    top1: float | None = None  # fraction on the test split
    latency: LatencyStats | None = None  # batch 1
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "precision": self.precision,
            "runtime": self.runtime,
            "file": self.file,
            "size_bytes": self.size_bytes,
            "parity": {**self.parity.to_dict(), "reference": self.parity_reference} if self.parity else None,
            "top1": self.top1,
            "latency_batch1": self.latency.to_dict() if self.latency else None,
            "note": self.note,
        }


@dataclass(frozen=True)
class ExportReport:
    arch: str
    resolution: int
    space: str
    fingerprint: str
    threads: int
    test_images: int
    results: tuple[FormatResult, ...]
    created: str
    finetune: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def result(self, fmt: str, precision: str | None = None) -> FormatResult | None:
        return next((r for r in self.results if r.format == fmt and (precision is None or r.precision == precision)), None)

    def summary(self) -> dict[str, float | None]:
        """The ratios the goals speak of: ONNX Runtime vs eager PyTorch, INT8 vs FP32."""
        torch_r, fp32, int8 = self.result("torch"), self.result("onnx"), self.result("ort-int8")
        ratio = lambda a, b: a.latency.median_ms / b.latency.median_ms if a and b and a.latency and b.latency else None  # noqa: E731
        drop = (fp32.top1 - int8.top1) * 100 if fp32 and int8 and fp32.top1 is not None and int8.top1 is not None else None
        return {"ort_fp32_speedup_vs_torch": ratio(torch_r, fp32), "ort_int8_speedup_vs_fp32": ratio(fp32, int8), "int8_top1_drop_points": drop}

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "resolution": self.resolution,
            "space": self.space,
            "fingerprint": self.fingerprint,
            "created": self.created,
            "threads": self.threads,
            "test_images": self.test_images,
            "data": self.data,
            "finetune": self.finetune,
            "summary": self.summary(),
            "results": [r.to_dict() for r in self.results],
        }


def write_report(directory: str | Path, report: ExportReport) -> Path:
    return atomic_write_json(Path(directory) / REPORT_FILE, report.to_dict())


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def format_table(report: ExportReport) -> str:
    """A fixed-width table for the terminal, one row per exported file, then the ratios."""
    head = ("format", "precision", "file", "size", "parity rel|diff|", "top-1 agree", "top-1 test", "median ms", "p90 ms")
    rows = [head]
    for r in report.results:
        rows.append((
            r.format, r.precision, r.file, _size(r.size_bytes),
            f"{r.parity.rel_diff:.2e}" if r.parity else "-",
            f"{r.parity.top1_agreement:.2%}" if r.parity else "-",
            f"{r.top1:.2%}" if r.top1 is not None else "-",
            f"{r.latency.median_ms:.3f}" if r.latency else "-",
            f"{r.latency.p90_ms:.3f}" if r.latency else "-",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = report.summary()
    notes = [
        f"arch {report.arch}, {report.test_images} test images, batch-1 latency with {report.threads} threads on this machine",
    ]
    if s["ort_fp32_speedup_vs_torch"] is not None:
        notes.append(f"ONNX Runtime FP32 vs eager PyTorch: {_speed(s['ort_fp32_speedup_vs_torch'])}")
    if s["ort_int8_speedup_vs_fp32"] is not None:
        notes.append(f"ONNX Runtime INT8 vs FP32: {_speed(s['ort_int8_speedup_vs_fp32'])}{_top1_change(s['int8_top1_drop_points'])}")
    notes += [f"{r.format} {r.precision}: {r.note}" for r in report.results if r.note]
    return "\n".join(lines + [""] + notes)


def _top1_change(drop_points: float | None) -> str:
    """The INT8 accuracy change as words (', top-1 0.84 points lower'); nothing without test accuracy."""
    if drop_points is None:
        return ""
    if abs(drop_points) < 0.005:
        return ", top-1 unchanged"
    return f", top-1 {abs(drop_points):.2f} points {'lower' if drop_points > 0 else 'higher'}"


def _speed(ratio: float) -> str:
    """A speed ratio (baseline time / this time) as words: '1.52x faster' or '1.08x slower'."""
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
