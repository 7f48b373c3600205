"""ONNX Runtime INT8: static quantization in QDQ format, calibrated on held-out training images.

Settings, measured on an AVX-512 VNNI CPU with ONNX Runtime 1.32 (see benchmarks/bench_export.py):
- unsigned 8-bit activations with signed per-channel weights (U8S8): with signed activations
  (S8S8) the CPU provider leaves most depthwise convolutions in float, which made the model slower
  than FP32;
- per-channel weights: depthwise kernels vary too much per channel for one scale per tensor;
- `quant_pre_process` first (shape inference and graph fusion), as ONNX Runtime's guide asks.
- activation ranges from the 99.9th percentile of a histogram, not min/max (outliers; see quantize_int8);
- then empirical bias correction (export/bias_correction.py).
TensorRT's explicit quantization wants symmetric signed Q/DQ and float biases instead: `for_tensorrt=True`.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader

from ofa.io import atomic_write

from export.bias_correction import correct_bias
from export.errors import ExportError
from export.onnx_export import INPUT_NAME

__all__ = ["ImageCalibrationReader", "quantize_int8"]


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds normalized images [N, 3, r, r] to the calibrator in batches."""

    def __init__(self, images: torch.Tensor, batch_size: int = 32):
        if images.shape[0] == 0:
            raise ExportError("INT8 calibration got no images: give a dataset with training images")
        self.images = images
        self.batch_size = int(batch_size)
        self.start = 0

    def get_next(self) -> dict | None:
        if self.start >= self.images.shape[0]:
            return None
        batch = self.images[self.start : self.start + self.batch_size]
        self.start += self.batch_size
        return {INPUT_NAME: batch.contiguous().numpy()}

    def rewind(self) -> None:
        self.start = 0


# TensorRT: symmetric signed ranges, and float biases (its DequantizeLinear takes INT8/FP8, not the INT32
# that ONNX Runtime writes for a quantized bias: onnx-tensorrt's operators.md).
_TENSORRT_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
CALIB_PERCENTILE = 99.9  # activation range: this percentile of the values seen in calibration ((100 - p) / 2 % cut off each side)


def quantize_int8(
    fp32_path: str | Path, out_path: str | Path, calib_images: torch.Tensor, *, batch_size: int = 32, for_tensorrt: bool = False,
    percentile: float = CALIB_PERCENTILE, bias_correction: bool = True, progress: bool = False,
) -> Path:
    """Write a QDQ INT8 copy of the FP32 ONNX model, with activation ranges from `calib_images`.

    Ranges are a high percentile of each tensor's values, not min/max: a few outliers in one
    activation stretched its range so far that a lean-space cifar subnet lost 12.7 points of top-1
    with MinMax against 1.7 with the percentile (2026-12-07, BENCHMARKS.md).  Then each layer's bias
    is corrected on the same images (export/bias_correction.py), which removes most of what is left.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path = Path(fp32_path)
    if not fp32_path.is_file():
        raise ExportError(f"{fp32_path} does not exist: export the ONNX model first (--formats onnx)")
    # ONNX Runtime's histogram calibrator stacks every batch's outputs into one array, so a short last
    # batch fails there: use the largest batch size <= batch_size that divides the image count.
    n = calib_images.shape[0]
    even = next((b for b in range(min(int(batch_size), n), 0, -1) if n % b == 0), 1)
    reader = ImageCalibrationReader(calib_images, even)
    with tempfile.TemporaryDirectory(prefix="ofa-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)

        quantized = Path(tmp) / "quantized.onnx"
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrator prints its settings
            quantize_static(
                str(prepared), str(quantized), reader,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": float(percentile), **(_TENSORRT_OPTIONS if for_tensorrt else {})},
            )
        model = onnx.load(str(quantized))
        if bias_correction:
            correct_bias(onnx.load(str(prepared)), model, calib_images, progress=progress)
        return atomic_write(out_path, lambda target: onnx.save(model, str(target)))
