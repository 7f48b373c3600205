"""Timing back-ends: ONNX Runtime CPU (default), PyTorch CPU, PyTorch CUDA and TensorRT.

Each back-end turns a static module (and its ONNX export, where the runtime needs one) into a
`Runner` whose `run(n)` executes it `n` times and returns the per-call times in milliseconds.
Tables, calibration and validation all time through these runners, so a layer and a whole network
are measured the same way.  Heavy or optional libraries are imported only by the back-end using them.
"""
from __future__ import annotations

import io
import math
import platform
import time
import warnings
from contextlib import contextmanager
from typing import Iterator, Protocol

import numpy as np
import torch
from torch import nn

from latency.errors import LatencyError

__all__ = [
    "RUNTIMES",
    "PRECISIONS",
    "CLOCKS",
    "Runner",
    "Backend",
    "make_backend",
    "export_onnx",
    "trace_onnx",
    "fix_input_shape",
    "ort_session",
    "fill_weights",
    "host_description",
]

RUNTIMES = ("ort-cpu", "torch-cpu", "torch-cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
_SUPPORTED = {"ort-cpu": ("fp32",), "torch-cpu": ("fp32",), "torch-cuda": ("fp32", "fp16"), "tensorrt": PRECISIONS}
_PATTERN = np.random.default_rng(0).standard_normal(61).astype(np.float32)

TENSORRT_HELP = (
    "TensorRT is not importable here: install it where a CUDA GPU is (`pip install tensorrt` on x86 with NVIDIA drivers; "
    "JetPack ships it on a Jetson), or profile the device with `ofa latency bundle --runtime tensorrt` and `ofa latency import`"
)


class Runner(Protocol):
    def run(self, n: int) -> np.ndarray:
        """Execute `n` times; per-call latencies in milliseconds."""


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fill_weights(module: nn.Module) -> nn.Module:
    """Deterministic, periodic weights at a sane scale (eval mode).

    Latency does not depend on weight values, but denormals or overflow would slow some CPUs; a
    short repeating pattern keeps values normal and makes ONNX files compress to almost nothing, so a
    bundle for a remote device stays small.  Every back-end times models filled the same way.
    """
    module.eval()
    with torch.no_grad(), _torch_threads(1):
        pattern = torch.from_numpy(_PATTERN)
        for name, p in module.named_parameters():
            flat = pattern.repeat(p.numel() // pattern.numel() + 1)[: p.numel()].view(p.shape)
            if p.dim() > 1:
                p.copy_(flat / math.sqrt(max(1, p[0].numel())))
            elif name.endswith("bn.weight"):
                p.fill_(1.0)
            else:
                p.copy_(0.01 * flat)
    return module


def trace_onnx(module: nn.Module, batch: int, channels: int, probe: int = 32, opset: int = 17):
    """ONNX model (onnx.ModelProto) of `module` (eval) with dynamic H/W, traced at a small side.

    Tracing runs the real ops, slow at full size, and the multi-threaded tracer crawls on a busy
    machine, so we trace small with one torch thread; `fix_input_shape` then sets the real size.
    BatchNorm is folded into the convolutions by the exporter.
    """
    import onnx

    buf = io.BytesIO()
    with _torch_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (torch.zeros(batch, channels, probe, probe),), buf, dynamo=False, opset_version=opset,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}, "y": {}},
        )
    return onnx.load_from_string(buf.getvalue())


def fix_input_shape(model, input_shape: tuple[int, ...]) -> bytes:
    """Serialized copy of a traced model with its input fixed to `input_shape`, shapes re-inferred."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    model = copy
    del model.graph.value_info[:]
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, input_shape):
        dim.Clear()
        dim.dim_value = value
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    return onnx.shape_inference.infer_shapes(model).SerializeToString()


def export_onnx(module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """ONNX of `module` (eval) for a fixed input shape [B, C, H, W]."""
    b, c, h, w = input_shape
    return fix_input_shape(trace_onnx(module, b, c, probe=min(h, w, 32)), input_shape)


def ort_session(model: bytes | str, threads: int, providers: list[str] | None = None):
    """The one ONNX Runtime session configuration used for layers and whole networks."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])


CLOCKS = ("wall", "cpu")


def _clock(name: str):
    """`wall`: elapsed time; `cpu`: this process's CPU time, which a single-threaded run accrues only
    while it is scheduled, so other processes on a shared machine do not inflate it."""
    return time.process_time if name == "cpu" else time.perf_counter


class _OrtRunner:
    def __init__(self, session, input_shape: tuple[int, ...], clock: str = "wall"):
        self.session = session
        self.feed = {"x": np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
        self.clock = _clock(clock)

    def run(self, n: int) -> np.ndarray:
        out = np.empty(n)
        run, feed, clock = self.session.run, self.feed, self.clock
        for i in range(n):
            t = clock()
            run(None, feed)
            out[i] = clock() - t
        return out * 1e3


class _TorchCpuRunner:
    def __init__(self, module: nn.Module, input_shape: tuple[int, ...], clock: str = "wall"):
        self.module = module.eval()
        self.x = torch.randn(input_shape)
        self.clock = _clock(clock)

    def run(self, n: int) -> np.ndarray:
        out = np.empty(n)
        clock = self.clock
        with torch.inference_mode():
            for i in range(n):
                t = clock()
                self.module(self.x)
                out[i] = clock() - t
        return out * 1e3


class _CudaEventRunner:
    """Times `launch()` on the current CUDA stream with CUDA events (GPU time, no host jitter)."""

    def __init__(self, launch):
        self.launch = launch

    def run(self, n: int) -> np.ndarray:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        with torch.inference_mode():
            for start, end in events:
                start.record()
                self.launch()
                end.record()
        torch.cuda.synchronize()
        return np.array([start.elapsed_time(end) for start, end in events])


class Backend:
    """One runtime configuration; `prepare` makes a runner for a module of a given input shape."""

    needs_onnx = True

    def __init__(self, runtime: str, threads: int, batch: int, precision: str, clock: str = "wall"):
        self.runtime, self.threads, self.batch, self.precision, self.clock = runtime, threads, batch, precision, clock

    def version(self) -> str:
        raise NotImplementedError

    def prepare(self, module: nn.Module, onnx_model: bytes | None, input_shape: tuple[int, ...]) -> Runner:
        raise NotImplementedError

    def close(self) -> None:
        """Undo process-wide settings (torch threads)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OrtCpuBackend(Backend):
    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def prepare(self, module, onnx_model, input_shape):
        return _OrtRunner(ort_session(onnx_model, self.threads), input_shape, self.clock)


class TorchCpuBackend(Backend):
    needs_onnx = False

    def __init__(self, *args):
        super().__init__(*args)
        self._old_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def version(self) -> str:
        return torch.__version__

    def prepare(self, module, onnx_model, input_shape):
        return _TorchCpuRunner(module, input_shape, self.clock)

    def close(self) -> None:
        torch.set_num_threads(self._old_threads)


class TorchCudaBackend(Backend):
    needs_onnx = False

    def version(self) -> str:
        return f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}"

    def prepare(self, module, onnx_model, input_shape):
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        module = module.eval().to("cuda", dtype)
        x = torch.randn(input_shape, device="cuda", dtype=dtype)
        return _CudaEventRunner(lambda: module(x))


class TensorRTBackend(Backend):
    """Builds an engine from the layer's ONNX with the requested precision (TensorRT 10/11 API)."""

    def __init__(self, *args):
        super().__init__(*args)
        import tensorrt as trt  # caller checked it imports

        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)

    def version(self) -> str:
        return f"TensorRT {self.trt.__version__}, {torch.cuda.get_device_name()}"

    def prepare(self, module, onnx_model, input_shape):
        trt = self.trt
        engine = build_trt_engine(trt, self.logger, onnx_model, self.precision)
        context = engine.create_execution_context()
        buffers = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            tensor = torch.zeros(shape, dtype=dtype, device="cuda")
            buffers.append(tensor)
            context.set_tensor_address(name, tensor.data_ptr())
        stream = torch.cuda.current_stream().cuda_stream

        def launch():
            context.execute_async_v3(stream)

        runner = _CudaEventRunner(launch)
        runner.keep = (engine, context, buffers)  # alive as long as the runner
        return runner


def trt_precision_flags(trt, precision: str) -> list:
    """Builder flags for a precision, with feature detection (TensorRT 11 drops implicit INT8)."""
    flags = []
    if precision in ("fp16", "int8"):
        if hasattr(trt.BuilderFlag, "FP16"):
            flags.append(trt.BuilderFlag.FP16)
    if precision == "int8":
        if not hasattr(trt.BuilderFlag, "INT8"):
            raise LatencyError(
                f"TensorRT {trt.__version__} has no implicit INT8 mode: time an explicitly quantized (Q/DQ) model "
                "instead, or use --precision fp16"
            )
        flags.append(trt.BuilderFlag.INT8)
    return flags


def build_trt_engine(trt, logger, onnx_model: bytes, precision: str):
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0
    if major < 10 and hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_model):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise LatencyError(f"TensorRT could not parse the layer's ONNX: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    for flag in trt_precision_flags(trt, precision):
        config.set_flag(flag)
    if precision == "int8":  # latency does not depend on the ranges: give every tensor one
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            for j in range(layer.num_outputs):
                tensor = layer.get_output(j)
                if hasattr(tensor, "set_dynamic_range"):
                    tensor.set_dynamic_range(-4.0, 4.0)
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            if hasattr(tensor, "set_dynamic_range"):
                tensor.set_dynamic_range(-4.0, 4.0)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise LatencyError("TensorRT failed to build an engine for a layer (see the TensorRT log above)")
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


def make_backend(runtime: str, threads: int = 1, batch: int = 1, precision: str = "fp32", clock: str = "wall") -> Backend:
    """The back-end for `runtime`, or one clear error saying what is missing and what to do."""
    if runtime not in RUNTIMES:
        raise LatencyError(f"unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if clock not in CLOCKS:
        raise LatencyError(f"unknown clock {clock!r}: choose one of {', '.join(CLOCKS)}")
    if clock == "cpu" and (threads != 1 or runtime not in ("ort-cpu", "torch-cpu")):
        raise LatencyError(
            "--clock cpu measures single-threaded CPU runtimes only: use --threads 1 with ort-cpu or torch-cpu, or --clock wall"
        )
    if precision not in _SUPPORTED[runtime]:
        supported = "/".join(_SUPPORTED[runtime])
        raise LatencyError(f"runtime {runtime} times {supported}, not {precision}: pick one of those or another runtime")
    if threads < 1 or batch < 1:
        raise LatencyError(f"threads and batch must be >= 1, got threads={threads}, batch={batch}")
    if runtime == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise LatencyError(TENSORRT_HELP) from None
    if runtime in ("torch-cuda", "tensorrt") and not torch.cuda.is_available():
        raise LatencyError(
            f"runtime {runtime} needs a CUDA GPU and none is visible here: build the table on the GPU machine "
            "(or profile it with `ofa latency bundle`)"
        )
    cls = {"ort-cpu": OrtCpuBackend, "torch-cpu": TorchCpuBackend, "torch-cuda": TorchCudaBackend, "tensorrt": TensorRTBackend}[runtime]
    return cls(runtime, threads, batch, precision, clock)


def host_description() -> dict[str, object]:
    """What machine timed the table (kept in the table, informational)."""
    import os

    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, object] = {"system": platform.platform(), "machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
