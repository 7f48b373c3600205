"""Empirical bias correction of a QDQ INT8 model: give each layer's quantized output the float mean.

Rounding and range clipping shift the mean of each channel of a quantized activation: a channel
whose values are nearly constant is rounded the same way on every image, and the clipped tail of
a percentile range pulls the mean down.  The shifts add up over a MobileNet's 50 layers: on a
lean-space cifar subnet, activations cost 1.5 of the 1.7 points INT8 lost (weights 0.2), spread
over every layer.  Banner et al. and Nagel et al. (2019) move each layer's bias by the difference
between the float and the quantized mean of its output on calibration images; with 99.9th-percentile
ranges that halved the mean loss over 12 subnets (1.04 -> 0.50 points; worst 2.11 -> 0.83; BENCHMARKS.md).  Layers are corrected in graph order, each
measured after the ones before it were corrected, since a correction changes everything
downstream; correcting all from one measurement over-corrects (a cifar subnet fell to chance).
Only the bias values change: the graph, ranges and speed stay the same.

ONNX Runtime's quantizer drops a Relu that follows a Conv (the uint8 range clamps at zero) and
gives the Conv the Relu's output name, so the Q/DQ'd output compares with the float Relu's output.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from tqdm import tqdm

from export.onnx_export import INPUT_NAME

__all__ = ["correct_bias"]

_INT32 = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
_RENAMED_OUTPUT = "_QuantizeLinear_Input"  # ONNX Runtime's suffix for a graph output's producer tensor


@dataclass(frozen=True)
class _Layer:
    """A Conv or Gemm with a bias initializer, and where its output is read in each model."""

    bias: str  # the bias initializer: int32 (ONNX Runtime's default) or float (the TensorRT flavour keeps biases float)
    scale: str | None  # an int32 bias's dequantization scale (input scale x weight scale, per output channel)
    quantized_output: str  # the output as its consumers see it in the QDQ model (after Q/DQ)
    float_output: str  # the same tensor in the float model


def _layers(quantized: onnx.ModelProto, float_names: set[str]) -> list[_Layer]:
    graph = quantized.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    kinds = {i.name: i.data_type for i in graph.initializer}
    layers = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        bias_dq = producer.get(node.input[2])
        if kinds.get(node.input[2]) == onnx.TensorProto.FLOAT:
            bias, scale = node.input[2], None
        elif bias_dq is not None and bias_dq.op_type == "DequantizeLinear" and kinds.get(bias_dq.input[0]) == onnx.TensorProto.INT32:
            bias, scale = bias_dq.input[0], bias_dq.input[1]
        else:
            continue
        out = node.output[0]
        seen = out
        quant = [c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"]
        if quant:
            dequant = [c for c in consumers.get(quant[0].output[0], []) if c.op_type == "DequantizeLinear"]
            seen = dequant[0].output[0] if dequant else out
        reference = out if out in float_names else out.removesuffix(_RENAMED_OUTPUT)
        if reference in float_names:
            layers.append(_Layer(bias, scale, seen, reference))
    return layers


class _Probe:
    """One unoptimized session that returns any tensor of `model`, with the initializers `feeds` overridable per run."""

    def __init__(self, model: onnx.ModelProto, outputs: list[str], feeds: list[str] = ()):
        import onnxruntime as ort

        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        have = {o.name for o in probe.graph.output}
        probe.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in outputs if n not in have)
        types = {i.name: i.data_type for i in probe.graph.initializer}
        probe.graph.input.extend(helper.make_tensor_value_info(n, types[n], None) for n in feeds)  # overridable by a feed
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor; fold nothing
        options.log_severity_level = 3
        self.session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def channel_means(self, names: list[str], images: torch.Tensor, batch_size: int, feeds: dict | None = None) -> list[np.ndarray]:
        """Mean over images (and positions) of each channel of the tensors `names`."""
        sums: list[np.ndarray] = [np.zeros(1)] * len(names)
        counts = [0] * len(names)
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].contiguous().numpy()
            for k, y in enumerate(self.session.run(names, {INPUT_NAME: batch, **(feeds or {})})):
                sums[k] = sums[k] + y.astype(np.float64).sum(axis=(0,) + tuple(range(2, y.ndim)))
                counts[k] += y.size // y.shape[1]
        return [total / count for total, count in zip(sums, counts)]


def _stored(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A bias held as float64 during correction, back in its own type (int32 rounded and saturated)."""
    return (np.clip(np.round(values), *_INT32) if dtype == np.int32 else values).astype(dtype)


PIXEL_BUDGET = 2**20  # images x height x width per measuring pass: all 256 images at 32 px, 32 at 224 px


def correct_bias(
    float_model: onnx.ModelProto, quantized: onnx.ModelProto, images: torch.Tensor, *, batch_size: int = 64,
    pixel_budget: int = PIXEL_BUDGET, progress: bool = False,
) -> int:
    """Shift each quantized layer's int32 bias so its output's channel means on `images` match the float model's.

    `float_model` is the model `quantized` was made from (the same tensor names).  Each layer costs one
    pass over the images, so large inputs use only the first images within `pixel_budget` (at least 32;
    a channel mean over 32 images of 7x7 or more positions is already steady): the caller shuffles them.
    Edits `quantized` in place; returns the number of layers corrected.
    """
    height, width = images.shape[-2:]
    images = images[: max(32, pixel_budget // (height * width))]
    float_names = {out for node in float_model.graph.node for out in node.output}
    layers = _layers(quantized, float_names)
    if not layers:
        return 0
    targets = _Probe(float_model, [layer.float_output for layer in layers]).channel_means(
        [layer.float_output for layer in layers], images, batch_size)
    initializers = {i.name: i for i in quantized.graph.initializer}
    biases = {layer.bias: numpy_helper.to_array(initializers[layer.bias]).astype(np.float64) for layer in layers}
    dtypes = {name: numpy_helper.to_array(initializers[name]).dtype for name in biases}
    probe = _Probe(quantized, [layer.quantized_output for layer in layers], list(biases))
    for layer, target in zip(tqdm(layers, desc="INT8 bias correction", unit="layer", disable=not progress, leave=False), targets):
        (current,) = probe.channel_means([layer.quantized_output], images, batch_size, {n: _stored(v, dtypes[n]) for n, v in biases.items()})
        shift = target - current
        if layer.scale is not None:  # int32 bias: in units of its scale
            scale = numpy_helper.to_array(initializers[layer.scale]).astype(np.float64)
            shift = np.round(np.divide(shift, scale, out=np.zeros_like(shift), where=scale > 0))
        biases[layer.bias] = biases[layer.bias] + shift
    for name, values in biases.items():
        initializers[name].CopyFrom(numpy_helper.from_array(_stored(values, dtypes[name]), name))
    return len(layers)
