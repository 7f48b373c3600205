"""Fit the accuracy predictor: split off a test portion, select a candidate by k-fold tau, report on the test portion."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from predictors.features import Encoding
from predictors.models import CANDIDATES, make_candidate
from predictors.predictor import AccuracyPredictor
from predictors.samples import SampleFile, SamplesError
from predictors.select import FoldScores, Metrics, choose, held_out_metrics, kfold_scores, split_test

__all__ = ["FitResult", "fit_predictor", "write_fit"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitResult:
    predictor: AccuracyPredictor
    selection: tuple[FoldScores, ...]  # every candidate's k-fold scores, in candidate order
    test: Metrics  # the chosen model on the held-out test portion
    macs_baseline: Metrics  # ranking by MACs alone on the same test portion (tau/spearman; rmse meaningless)
    measured: np.ndarray  # test portion, measured top-1
    predicted: np.ndarray  # test portion, predicted top-1
    n_fit: int
    seconds: float


def fit_predictor(
    samples: SampleFile,
    *,
    folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    candidates: Sequence[str] = CANDIDATES,
    mlp_steps: int = 1500,
    progress: bool = True,
) -> FitResult:
    """Choose among `candidates` by k-fold Kendall tau (mean - std) on the fit portion, refit it there, test it."""
    from tqdm import tqdm

    start = time.perf_counter()
    if folds < 2:
        raise SamplesError(f"--folds must be >= 2, got {folds}")
    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or not candidates:
        raise SamplesError(f"unknown predictor model(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(CANDIDATES)}")
    space = samples.space
    n = len(samples.samples)
    fit_idx, test_idx = split_test(n, test_fraction, seed) if n >= 2 else (np.arange(n), np.arange(0))
    if len(fit_idx) < 2 * folds or len(test_idx) < 2:
        raise SamplesError(
            f"{n} samples are too few for {folds}-fold selection plus a {test_fraction:.0%} test portion "
            f"(need at least {int(np.ceil(2 * folds / (1 - test_fraction))) + 1}): collect more with `ofa predictor collect --n` or lower --folds"
        )
    encoding = Encoding.for_space(space)
    X = encoding.features(space.encode([s.arch for s in samples.samples]))
    y = np.array([s.top1 for s in samples.samples], dtype=np.float64)
    _warn_if_ties(y)
    macs = np.array([s.macs for s in samples.samples], dtype=np.float64)
    scores = []
    bar = tqdm(total=len(candidates), desc="select", unit="model", disable=not progress, dynamic_ncols=True)
    for name in candidates:
        bar.set_postfix_str(name)
        scores.append(kfold_scores(lambda: make_candidate(name, seed, mlp_steps), X[fit_idx], y[fit_idx], folds, seed))
        log.info("%-18s k-fold tau %.3f +- %.3f", name, scores[-1].mean, scores[-1].std)
        bar.update(1)
    bar.close()
    best = choose(scores)
    model = make_candidate(best.name, seed, mlp_steps).fit(X[fit_idx], y[fit_idx])
    predicted = model.predict(X[test_idx])
    test = held_out_metrics(y[test_idx], predicted)
    baseline = held_out_metrics(y[test_idx], _rescale(macs[test_idx], y[fit_idx], macs[fit_idx]))
    metadata = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "supernet": samples.header.supernet,
        "samples": {"n": n, "n_fit": int(len(fit_idx)), "n_test": int(len(test_idx)), "data": samples.header.data,
                    "n_calib": samples.header.n_calib, "calib_split": samples.header.calib_split, "eval_split": samples.header.eval_split},
        "selection": {"folds": folds, "seed": seed, "criterion": "kendall tau mean - std",
                      "candidates": [s.to_dict() for s in scores], "chosen": best.name},
        "test": test.to_dict(),
        "macs_baseline": {k: v for k, v in baseline.to_dict().items() if k in ("n", "kendall_tau", "spearman")},
        "target": "top1 fraction on the validation split",
    }
    predictor = AccuracyPredictor(space, model, metadata)
    return FitResult(predictor, tuple(scores), test, baseline, y[test_idx], predicted, len(fit_idx), time.perf_counter() - start)


def _warn_if_ties(y: np.ndarray) -> None:
    """Few distinct accuracies mean a validation split too small to rank subnets: say so, it is not an error."""
    distinct = len(np.unique(y))
    if distinct == 1:
        log.warning("all %d samples measured the same top-1 (%.2f%%): nothing to rank, so the search will choose by its "
                    "other objectives; a larger validation split tells subnets apart", len(y), 100 * y[0])
    elif distinct < max(3, len(y) // 4):
        log.warning("only %d distinct accuracies among %d samples: the validation split is too small to rank subnets "
                    "finely, so expect a weak predictor (more validation images help)", distinct, len(y))


def _rescale(macs: np.ndarray, y_fit: np.ndarray, macs_fit: np.ndarray) -> np.ndarray:
    """A least-squares line of accuracy on log-MACs (rank = rank by MACs), for a comparable baseline."""
    a, b = np.polyfit(np.log(macs_fit), y_fit, 1)
    return a * np.log(macs) + b


def write_fit(result: FitResult, out: str | Path) -> Path:
    """Save the predictor and its predicted-vs-measured plot into `out`."""
    from predictors.plot import plot_predicted_vs_measured

    out = Path(out)
    result.predictor.save(out)
    t = result.test
    plot_predicted_vs_measured(
        result.measured, result.predicted, out / "predicted_vs_measured.png",
        f"{result.predictor.model_name} on {t.n} held-out subnets: tau {t.kendall_tau:.3f}, "
        f"Spearman {t.spearman:.3f}, RMSE {t.rmse * 100:.2f} pts",
    )
    return out
