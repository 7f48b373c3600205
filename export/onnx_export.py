"""Static subnet -> single-file ONNX, checked by `onnx.checker` and by ONNX Runtime on real images.

Exporter choice: the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`).  Our static
networks have no data-dependent control flow, so tracing captures them exactly; it exports a
MobileNetV3 in well under a second and writes one self-contained file, whereas the dynamo exporter
of torch 2.14 takes seconds per block and writes weights as external data by default.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from ofa.io import atomic_write

from export.errors import ExportError, ParityError

__all__ = ["OPSET", "INPUT_NAME", "OUTPUT_NAME", "Parity", "export_onnx", "ort_session", "ort_logits", "torch_logits", "check_parity", "compare_logits"]

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
REL_TOL = 1e-4


@dataclass(frozen=True)
class Parity:
    """How closely one runtime's logits follow a reference's on the same images."""

    n_images: int
    max_abs_diff: float
    max_abs_ref: float
    top1_agreement: float  # fraction of the decisive images (not `ties`) with the same top-1 class
    ties: int = 0  # images whose reference top-2 logits are closer than the tolerance allows either to move

    @property
    def rel_diff(self) -> float:
        return self.max_abs_diff / max(self.max_abs_ref, 1e-12)

    def passes(self, rel_tol: float = REL_TOL) -> bool:
        return self.rel_diff <= rel_tol and self.top1_agreement == 1.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "n_images": self.n_images,
            "max_abs_diff": self.max_abs_diff,
            "max_abs_ref": self.max_abs_ref,
            "rel_diff": self.rel_diff,
            "top1_agreement": self.top1_agreement,
            "ties": self.ties,
        }


def export_onnx(model: nn.Module, path: str | Path, resolution: int, opset: int = OPSET) -> Path:
    """Write `model` (eval mode, CPU) as ONNX with a dynamic batch dimension; run `onnx.checker`."""
    if opset < 17:
        raise ExportError(f"ONNX opset {opset} is too old: use 17 or newer")
    model = model.eval().cpu()
    example = torch.zeros(1, 3, resolution, resolution)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated but chosen on purpose (see above)
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(tmp), dynamo=False, opset_version=opset, do_constant_folding=True,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        proto = onnx.load(str(tmp))
        _reduce_mean_to_global_pool(proto.graph)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))

    return atomic_write(path, write)


def _reduce_mean_to_global_pool(graph: onnx.GraphProto) -> int:
    """Rewrite ReduceMean over H, W (keepdims) as GlobalAveragePool, the same function on NCHW.

    Why: ONNX Runtime's quantizer has an int8 kernel for GlobalAveragePool but not for ReduceMean, so
    without this each squeeze-excite gate would fall back to float between dequantize/quantize pairs.
    """
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes, rewritten = [], 0
    for node in graph.node:
        if node.op_type == "ReduceMean":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            axes = constants.get(node.input[1]) if len(node.input) > 1 else attrs.get("axes")
            if axes is not None and sorted(int(a) % 4 for a in np.ravel(axes)) == [2, 3] and attrs.get("keepdims", 1) == 1:
                nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name))
                rewritten += 1
                continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def ort_session(path: str | Path, threads: int | None = None, providers: list[str] | None = None):
    """An ONNX Runtime session on `path` with `threads` intra-op threads (same as torch for fair timing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    # no busy-waiting after a run: spinning ONNX Runtime threads would steal the cores from
    # whatever runs next (PyTorch, in the interleaved timing), and cost little here
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportError(f"ONNX Runtime cannot load {path} ({type(exc).__name__}: {str(exc).splitlines()[0]}); re-run `ofa export`") from None


def ort_logits(session, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Logits of an ONNX Runtime session on normalized float images [N, 3, r, r], in batches."""
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size].numpy()})[0]
        for i in range(0, images.shape[0], batch_size)
    ]
    return np.concatenate(outputs, 0)


@torch.no_grad()
def torch_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]).numpy()


def compare_logits(reference: np.ndarray, other: np.ndarray, rel_tol: float = REL_TOL) -> Parity:
    """Largest difference and top-1 agreement.  An image whose reference top-1 and runner-up logits
    are within twice the allowed difference (`rel_tol` x max |reference|) is a tie: float round-off
    inside the tolerance may swap them, so it is counted in `ties`, not against the agreement."""
    if reference.shape != other.shape:
        raise ParityError(f"output shapes differ: reference {reference.shape}, exported {other.shape}; re-export the model")
    max_ref = float(np.abs(reference).max())
    top2 = np.sort(reference, axis=1)[:, -2:]  # datasets have >= 2 classes
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * rel_tol * max_ref
    same = reference.argmax(1) == other.argmax(1)
    return Parity(
        n_images=int(reference.shape[0]),
        max_abs_diff=float(np.abs(reference - other).max()),
        max_abs_ref=max_ref,
        top1_agreement=float(same[decisive].mean()) if decisive.any() else 1.0,
        ties=int((~decisive).sum()),
    )


def check_parity(
    onnx_path: str | Path, model: nn.Module, images: torch.Tensor, *, batch_size: int = 64, rel_tol: float = REL_TOL,
    threads: int | None = None,
) -> Parity:
    """Run the ONNX file and the PyTorch model on the same images; raise `ParityError` if they differ.

    Passing means max |difference| <= rel_tol * max |reference| and the same top-1 class on every
    image whose top two reference logits are not tied within that tolerance.  Batches of `batch_size`
    (not 1) also exercise the dynamic batch dimension.
    """
    if images.shape[0] == 0:
        raise ExportError("the parity check got no images: give a dataset with validation images")
    reference = torch_logits(model, images, batch_size)
    parity = compare_logits(reference, ort_logits(ort_session(onnx_path, threads), images, batch_size), rel_tol)
    if not parity.passes(rel_tol):
        raise ParityError(
            f"ONNX Runtime output of {onnx_path} differs from PyTorch on {parity.n_images} validation images: "
            f"max |diff| {parity.max_abs_diff:.3g} = {parity.rel_diff:.3g} x max |ref| (limit {rel_tol:g}), "
            f"top-1 agreement {parity.top1_agreement:.2%} ({parity.ties} ties left out); do not ship it, report the arch to the developers"
        )
    return parity
