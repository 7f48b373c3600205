"""Model selection by k-fold Kendall tau (mean minus std, as NSGANetV2), and held-out metrics.

The search only needs the predictor to *rank* subnets correctly, so candidates are compared on
rank correlation, penalized by its spread over folds (a model that ranks well only sometimes is
a poor guide).  The test portion is split off first and used once, to report the chosen model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr

from predictors.models import Regressor

__all__ = ["Metrics", "FoldScores", "split_test", "kfold_scores", "held_out_metrics", "choose"]


@dataclass(frozen=True)
class Metrics:
    """How well predictions match measurements on samples the model never saw."""

    n: int
    rmse: float  # in accuracy units (fraction); x100 for percentage points
    kendall_tau: float
    spearman: float

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "rmse_pct": self.rmse * 100}


@dataclass(frozen=True)
class FoldScores:
    """k-fold Kendall tau of one candidate; `score` = mean - std decides the selection."""

    name: str
    taus: tuple[float, ...]
    rmses: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.taus))

    @property
    def std(self) -> float:
        return float(np.std(self.taus))

    @property
    def score(self) -> float:
        return self.mean - self.std

    def to_dict(self) -> dict:
        return {"name": self.name, "tau_mean": self.mean, "tau_std": self.std, "score": self.score,
                "taus": list(self.taus), "rmse_mean": float(np.mean(self.rmses))}


def held_out_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Metrics:
    """RMSE and rank correlations; a constant side carries no ranking, so its correlations count as 0."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    rmse = float(np.sqrt(np.mean((y_true - y_pred) ** 2)))
    if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return Metrics(len(y_true), rmse, 0.0, 0.0)
    tau = kendalltau(y_true, y_pred).statistic
    rho = spearmanr(y_true, y_pred).statistic
    return Metrics(len(y_true), rmse, float(np.nan_to_num(tau)), float(np.nan_to_num(rho)))


def split_test(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (fit indices, test indices): a seeded random test portion of `n` samples."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    n_test = max(1, int(round(n * test_fraction)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def kfold_scores(make: Callable[[], Regressor], X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> FoldScores:
    """Fit a fresh model on k-1 folds, score Kendall tau on the remaining fold, k times."""
    from sklearn.model_selection import KFold

    taus, rmses, name = [], [], ""
    for train, val in KFold(folds, shuffle=True, random_state=seed).split(X):
        model = make().fit(X[train], y[train])
        metrics = held_out_metrics(y[val], model.predict(X[val]))
        taus.append(metrics.kendall_tau)
        rmses.append(metrics.rmse)
        name = model.name
    return FoldScores(name, tuple(taus), tuple(rmses))


def choose(scores: Sequence[FoldScores]) -> FoldScores:
    """Highest mean - std; ties go to the earlier candidate (list order is the preference order)."""
    return max(scores, key=lambda s: (s.score, -list(scores).index(s)))
