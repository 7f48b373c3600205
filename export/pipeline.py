"""One export run: PyTorch files, ONNX with parity, ORT INT8, TensorRT engines, then the report.

The caller prepares the model (extracted, BN re-calibrated, maybe fine-tuned) and the images; this
module only turns them into files and measures each file the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from export.errors import ExportError, TensorRTUnavailable
from export.onnx_export import INPUT_NAME, OPSET, OUTPUT_NAME, check_parity, compare_logits, export_onnx, ort_logits, ort_session
from export.ort_int8 import quantize_int8
from export.report import ExportReport, FormatResult, write_report
from export.tensorrt_export import (
    INSTALL_HINT, PRECISIONS, EngineSettings, TensorRTRunner, build_engine, require_tensorrt, tensorrt_available, trtexec_command,
)
from export.timing import time_interleaved
from export.torch_export import ExportInfo, save_torch

__all__ = ["FORMATS", "ExportOptions", "ExportImages", "parse_formats", "parse_precisions", "check_requirements", "run_export"]

FORMATS = ("torch", "onnx", "ort-int8", "tensorrt")
ONNX_FILE, INT8_FILE, TRT_INT8_FILE = "model.onnx", "model.int8.onnx", "model.qdq-trt.onnx"


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """`torch,onnx,ort-int8,tensorrt` -> a tuple in pipeline order; `torch` and the ONNX file they need are implied."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ExportError(f"unknown export format {', '.join(unknown) or '(none)'}: use a comma-separated subset of {','.join(FORMATS)}")
    wanted = set(names) | {"torch"}
    if wanted & {"ort-int8", "tensorrt"}:
        wanted.add("onnx")  # both are built from the ONNX file
    return tuple(f for f in FORMATS if f in wanted)


def parse_precisions(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in PRECISIONS]
    if unknown or not names:
        raise ExportError(f"unknown TensorRT precision {', '.join(unknown) or '(none)'}: use a comma-separated subset of {','.join(PRECISIONS)}")
    return tuple(p for p in PRECISIONS if p in names)


@dataclass(frozen=True)
class ExportOptions:
    formats: tuple[str, ...] = ("torch", "onnx", "ort-int8")
    precisions: tuple[str, ...] = ("fp32", "fp16")  # of TensorRT engines
    threads: int | None = None  # torch and ONNX Runtime intra-op threads (default: torch's current)
    latency_repeats: int = 50
    batch_size: int = 64
    opset: int = OPSET
    trt_max_batch: int = 64
    progress: bool = False  # progress bars on the slow steps (INT8 bias correction)


@dataclass(frozen=True)
class ExportImages:
    """Normalized images at the arch's resolution: validation for parity, training for INT8 ranges."""

    parity: torch.Tensor
    calibration: torch.Tensor
    test: Iterable  # re-iterable batches (x, y, ...), e.g. an ofa.data.BatchLoader over the test split


def run_export(
    model: nn.Module, info: ExportInfo, out_dir: str | Path, images: ExportImages, options: ExportOptions = ExportOptions(),
    log: Callable[[str], None] = lambda msg: None, extra: dict[str, Any] | None = None,
) -> ExportReport:
    """Write every requested format into `out_dir`, check and measure each, write `export_report.json`."""
    out = Path(out_dir)
    formats = parse_formats(options.formats)
    check_requirements(options, out, info.resolution)
    threads = int(options.threads or torch.get_num_threads())
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(model.eval().cpu(), info, out, images, options, formats, threads, log, extra or {})
    finally:
        torch.set_num_threads(saved_threads)


def check_requirements(options: ExportOptions, out_dir: str | Path, resolution: int) -> None:
    """Fail before any work when a requested format cannot be built here (with the trtexec lines for the device)."""
    if "tensorrt" not in parse_formats(options.formats):
        return
    out = Path(out_dir)
    sources = {p: out / (TRT_INT8_FILE if p == "int8" else ONNX_FILE) for p in options.precisions}
    if not tensorrt_available():
        commands = "; ".join(
            trtexec_command(sources[p], out / f"model.{p}.engine", _engine_settings(options, p, resolution)) for p in options.precisions
        )
        raise TensorRTUnavailable(
            f"TensorRT is not installed: {INSTALL_HINT}, or export without tensorrt and build on the device: {commands}"
        )
    for precision in options.precisions:  # the library is there: is a GPU?
        require_tensorrt(sources[precision], out / f"model.{precision}.engine", _engine_settings(options, precision, resolution))


def _engine_settings(options: ExportOptions, precision: str, resolution: int) -> EngineSettings:
    return EngineSettings(precision, resolution, 1, 1, options.trt_max_batch)


def _run(model, info, out, images, options, formats, threads, log, extra) -> ExportReport:
    results: list[FormatResult] = []
    runners: dict[str, Callable[[], object]] = {}
    x1 = images.parity[:1].contiguous()
    x1_np = x1.numpy()

    log(f"writing {out / 'model.pt'} and arch.json")
    save_torch(model, info, out)
    torch_top1 = _top1(lambda x: _torch_forward(model, x), images.test)
    results.append(FormatResult("torch", "fp32", "pytorch eager cpu", "model.pt", (out / "model.pt").stat().st_size, top1=torch_top1))
    runners["torch"] = lambda: _torch_forward(model, x1)

    fp32_logits = None
    if "onnx" in formats:
        log(f"exporting {out / ONNX_FILE} (opset {options.opset}) and checking parity on {images.parity.shape[0]} validation images")
        export_onnx(model, out / ONNX_FILE, info.resolution, options.opset)
        parity = check_parity(out / ONNX_FILE, model, images.parity, batch_size=options.batch_size, threads=threads)
        session = ort_session(out / ONNX_FILE, threads)
        fp32_logits = ort_logits(session, images.parity, options.batch_size)
        top1 = _top1(lambda x: _ort_forward(session, x), images.test)
        results.append(FormatResult("onnx", "fp32", "onnxruntime cpu", ONNX_FILE, (out / ONNX_FILE).stat().st_size, parity, "pytorch", top1))
        runners["onnx"] = lambda: session.run([OUTPUT_NAME], {INPUT_NAME: x1_np})

    if "ort-int8" in formats:
        log(f"quantizing to {out / INT8_FILE} with {images.calibration.shape[0]} training images")
        quantize_int8(out / ONNX_FILE, out / INT8_FILE, images.calibration, progress=options.progress)
        int8 = ort_session(out / INT8_FILE, threads)
        parity = compare_logits(fp32_logits, ort_logits(int8, images.parity, options.batch_size))
        top1 = _top1(lambda x: _ort_forward(int8, x), images.test)
        results.append(
            FormatResult("ort-int8", "int8", "onnxruntime cpu", INT8_FILE, (out / INT8_FILE).stat().st_size, parity, "onnx fp32", top1,
                         note="QDQ static quantization (U8S8, per-channel, 99.9th-percentile ranges, bias-corrected); parity is informative, not a check")
        )
        runners["ort-int8"] = lambda: int8.run([OUTPUT_NAME], {INPUT_NAME: x1_np})

    log(f"timing batch 1 with {threads} threads ({options.latency_repeats} interleaved repeats)")
    stats = time_interleaved(runners, options.latency_repeats)
    results = [_with_latency(r, stats.get(r.format)) for r in results]

    if "tensorrt" in formats:
        results += _tensorrt(out, images, options, fp32_logits, info.resolution, log)

    report = ExportReport(
        arch=info.arch.key(), resolution=info.resolution, space=info.space.name, fingerprint=info.space.fingerprint(),
        threads=threads, test_images=_count(images.test), results=tuple(results),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), finetune=extra.get("finetune"), data=extra.get("data", {}),
    )
    write_report(out, report)
    return report


def _tensorrt(out: Path, images: ExportImages, options: ExportOptions, fp32_logits, resolution: int, log) -> list[FormatResult]:
    results = []
    for precision in options.precisions:
        settings = _engine_settings(options, precision, resolution)
        source = out / ONNX_FILE
        if precision == "int8":
            source = quantize_int8(out / ONNX_FILE, out / TRT_INT8_FILE, images.calibration, for_tensorrt=True, progress=options.progress)
        engine = out / f"model.{precision}.engine"
        log(f"building TensorRT {precision} engine {engine}")
        build_engine(source, engine, settings)
        runner = TensorRTRunner(engine)
        parity = runner.parity(fp32_logits, images.parity, options.batch_size)
        top1 = _top1(lambda x: torch.from_numpy(runner.logits(x, options.batch_size)), images.test)
        results.append(FormatResult(
            "tensorrt", precision, "tensorrt cuda", engine.name, engine.stat().st_size, parity, "onnx fp32", top1,
            runner.latency(1, resolution), note="latency from CUDA events on the GPU",
        ))
    return results


def _with_latency(result: FormatResult, stats) -> FormatResult:
    return replace(result, latency=stats)


@torch.inference_mode()
def _torch_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _ort_forward(session, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.contiguous().numpy()})[0])


def _top1(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable) -> float:
    correct = seen = 0
    for batch in batches:
        x, y = batch[0], batch[1]
        correct += int((forward(x).argmax(1) == y).sum())
        seen += int(y.numel())
    if seen == 0:
        raise ExportError("the test split is empty: give a dataset with test images to measure accuracy")
    return correct / seen


def _count(batches: Iterable) -> int:
    dataset = getattr(batches, "dataset", None)
    return len(dataset) if dataset is not None else sum(int(b[1].numel()) for b in batches)
