"""The predicted-vs-measured plot of the held-out test portion (PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ofa.io import atomic_write

__all__ = ["plot_predicted_vs_measured"]


def plot_predicted_vs_measured(measured: np.ndarray, predicted: np.ndarray, path: str | Path, title: str) -> Path:
    """Scatter of held-out samples against the identity line, in percent top-1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m, p = np.asarray(measured) * 100, np.asarray(predicted) * 100
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    lo, hi = float(min(m.min(), p.min())), float(max(m.max(), p.max()))
    pad = (hi - lo) * 0.05 or 0.5
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1, ls="--", label="ideal")
    ax.scatter(m, p, s=12, alpha=0.7)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("measured top-1 on the validation split (%)")
    ax.set_ylabel("predicted top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return Path(path)
