"""Errors of the export step: each says what went wrong and how to fix it, in one line."""
from __future__ import annotations

from ofa.errors import OfaError

__all__ = ["ExportError", "ParityError", "TensorRTUnavailable"]


class ExportError(OfaError, ValueError):
    """An exported model directory or file is missing, corrupt, or belongs to another space."""


class ParityError(OfaError):
    """An exported model does not compute what the PyTorch model computes: the file must not ship."""


class TensorRTUnavailable(OfaError):
    """TensorRT (or a CUDA GPU) is missing on this machine."""
