"""Export a specialized subnet: PyTorch files, ONNX (parity-checked), ONNX Runtime INT8, TensorRT.

    from export import load_exported
    model = load_exported("work/export/jetson-20ms")      # plain PyTorch, no supernet needed
"""
from export.errors import ExportError, ParityError, TensorRTUnavailable
from export.finetune import FinetuneResult, finetune
from export.onnx_export import OPSET, Parity, check_parity, export_onnx, ort_session
from export.ort_int8 import quantize_int8
from export.pipeline import FORMATS, ExportImages, ExportOptions, check_requirements, parse_formats, parse_precisions, run_export
from export.report import ExportReport, FormatResult, format_table, write_report
from export.tensorrt_export import EngineSettings, build_engine, tensorrt_available, trtexec_command
from export.timing import LatencyStats, time_interleaved
from export.torch_export import ExportInfo, load_exported, read_export_info, save_torch

__all__ = [
    "ExportError", "ParityError", "TensorRTUnavailable",
    "FinetuneResult", "finetune",
    "OPSET", "Parity", "check_parity", "export_onnx", "ort_session",
    "quantize_int8",
    "FORMATS", "ExportImages", "ExportOptions", "check_requirements", "parse_formats", "parse_precisions", "run_export",
    "ExportReport", "FormatResult", "format_table", "write_report",
    "EngineSettings", "build_engine", "tensorrt_available", "trtexec_command",
    "LatencyStats", "time_interleaved",
    "ExportInfo", "load_exported", "read_export_info", "save_torch",
]
