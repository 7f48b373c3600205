"""TensorRT engines from the exported ONNX file: build, parity against ONNX Runtime, CUDA-event latency.

Written against the TensorRT 10.x Python API and feature-detected for 11.x, where the weakly-typed
precision flags are gone: FP16 then comes from a strongly typed network parsed from an FP16 copy
of the ONNX file, and INT8 (in both versions) from explicit Q/DQ nodes, the ONNX file that
`quantize_int8(..., for_tensorrt=True)` writes, so no deprecated calibrator is used.
The `tensorrt` wheel is not installable everywhere: without it, `require_tensorrt` raises one line
that says how to install it or how to build the engine on the device with `trtexec`.
"""
from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa.io import atomic_write, atomic_write_json

from export.errors import ExportError, TensorRTUnavailable
from export.onnx_export import INPUT_NAME, OUTPUT_NAME, Parity, compare_logits
from export.timing import LatencyStats

__all__ = [
    "PRECISIONS", "EngineSettings", "tensorrt_available", "require_tensorrt", "trtexec_command", "build_engine",
    "TensorRTRunner",
]

PRECISIONS = ("fp32", "fp16", "int8")
INSTALL_HINT = "pip install tensorrt (NVIDIA's index, on a machine with an NVIDIA GPU and driver)"


@dataclass(frozen=True)
class EngineSettings:
    """How an engine was built; written beside it as JSON (an engine only runs where it was built)."""

    precision: str
    resolution: int
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 64
    workspace_mib: int = 1024

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ExportError(f"unknown TensorRT precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ExportError(
                f"TensorRT batch sizes must satisfy 1 <= min <= opt <= max, got {self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, self.resolution, self.resolution)


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, settings: EngineSettings) -> str:
    """The `trtexec` line that builds the same engine on the device from the exported ONNX file."""
    shape = lambda b: "x".join(str(d) for d in settings.shape(b))  # noqa: E731
    parts = [
        "trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
        f"--minShapes={INPUT_NAME}:{shape(settings.min_batch)}",
        f"--optShapes={INPUT_NAME}:{shape(settings.opt_batch)}",
        f"--maxShapes={INPUT_NAME}:{shape(settings.max_batch)}",
        f"--memPoolSize=workspace:{settings.workspace_mib}M",
    ]
    if settings.precision == "fp16":
        parts.append("--fp16")
    if settings.precision == "int8":
        parts.append("--int8")  # with a Q/DQ ONNX file the scales come from the file
    return " ".join(parts)


def require_tensorrt(onnx_path: str | Path, engine_path: str | Path, settings: EngineSettings):
    """The `tensorrt` module and a CUDA device, or one line saying how to get an engine anyway."""
    return _tensorrt_module(f"build the engine on the device from the exported ONNX: {trtexec_command(onnx_path, engine_path, settings)}")


def _tensorrt_module(alternative: str):
    if not tensorrt_available():
        raise TensorRTUnavailable(f"TensorRT is not installed: {INSTALL_HINT}, or {alternative}")
    import tensorrt as trt
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} needs a CUDA GPU and none is visible; {alternative}")
    return trt


def _weakly_typed_flags(trt) -> bool:
    """TensorRT 10 still has BuilderFlag.FP16/INT8; 11 drops them for strongly typed networks."""
    return hasattr(trt.BuilderFlag, "FP16")


def _network_flags(trt, strongly_typed: bool) -> int:
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(explicit)  # 8.x needs it; 10.x+ networks are always explicit batch
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _fp16_onnx(onnx_path: Path, out_path: Path) -> Path:
    """An FP16 copy of the model with FP32 inputs/outputs, for a strongly typed FP16 network."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True)
    return atomic_write(out_path, lambda p: onnx.save(model, str(p)))


def build_engine(onnx_path: str | Path, engine_path: str | Path, settings: EngineSettings) -> dict[str, Any]:
    """Build and save a serialized engine plus `<engine>.json` with its build settings; return them.

    For `int8`, `onnx_path` must be the Q/DQ file from `quantize_int8(..., for_tensorrt=True)`.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    trt = require_tensorrt(onnx_path, engine_path, settings)
    import torch

    weakly_typed = _weakly_typed_flags(trt)
    source = onnx_path
    if settings.precision == "fp16" and not weakly_typed:
        source = _fp16_onnx(onnx_path, engine_path.with_suffix(".fp16.onnx"))
    strongly_typed = not weakly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {source}: {errors}; check the TensorRT version supports opset 17")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if weakly_typed and settings.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if weakly_typed and settings.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes (explicit quantization)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, settings.shape(settings.min_batch), settings.shape(settings.opt_batch), settings.shape(settings.max_batch))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {source} (see its log above); try --precision fp32")
    data = bytes(serialized)
    atomic_write(engine_path, lambda p: p.write_bytes(data))
    record = {
        **asdict(settings),
        "tensorrt_version": trt.__version__,
        "device": torch.cuda.get_device_name(),
        "onnx": source.name,
        "onnx_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "strongly_typed": strongly_typed,
        "engine_bytes": len(data),
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
    }
    atomic_write_json(engine_path.with_suffix(".json"), record)
    return record


class TensorRTRunner:
    """Runs a serialized engine on CUDA tensors through the name-based I/O API of TensorRT 10+."""

    def __init__(self, engine_path: str | Path):
        path = Path(engine_path)
        self.trt = _tensorrt_module("run the engine on the machine it was built for")
        import torch

        self.torch = torch
        runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ExportError(f"{path} is not an engine for TensorRT {self.trt.__version__} on this GPU: rebuild it here")
        self.context = self.engine.create_execution_context()
        if not hasattr(self.context, "execute_async_v3"):
            raise TensorRTUnavailable(f"TensorRT {self.trt.__version__} is too old: install TensorRT 10 or newer ({INSTALL_HINT})")
        self.stream = torch.cuda.Stream()

    def __call__(self, images: "torch.Tensor") -> "torch.Tensor":
        torch = self.torch
        x = images.to("cuda", torch.float32).contiguous()
        self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise ExportError("TensorRT execution failed (see its log above)")
        torch.cuda.current_stream().wait_stream(self.stream)
        return out

    def logits(self, images: "torch.Tensor", batch_size: int = 64) -> np.ndarray:
        return np.concatenate([self(images[i : i + batch_size]).cpu().numpy() for i in range(0, images.shape[0], batch_size)])

    def parity(self, reference_logits: np.ndarray, images: "torch.Tensor", batch_size: int = 64) -> Parity:
        """Engine vs ONNX Runtime logits on the same images (FP16/INT8 engines are not expected to match 1e-4)."""
        return compare_logits(reference_logits, self.logits(images, batch_size))

    def latency(self, batch: int, resolution: int, repeats: int = 100, warmup: int = 10) -> LatencyStats:
        """Median and p90 of one inference measured with CUDA events on the engine's stream."""
        torch = self.torch
        x = torch.randn(batch, 3, resolution, resolution, device="cuda")
        for _ in range(warmup):
            self(x)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return LatencyStats(float(np.median(times)), float(np.percentile(times, 90)), repeats)
