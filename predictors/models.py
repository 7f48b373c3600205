"""Candidate accuracy models: the once-for-all MLP (PyTorch) and scikit-learn regressors.

All share one small interface (`fit(X, y)`, `predict(X)`, `name`), so selection treats them alike.
Every candidate is seeded: fitting the same data twice gives the same model.
"""
from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

__all__ = ["Regressor", "MlpRegressor", "SklearnRegressor", "CANDIDATES", "make_candidate"]

CANDIDATES = ("mlp", "gp", "random-forest", "gradient-boosting", "ridge")


class Regressor(Protocol):
    name: str

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Regressor": ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


def _mlp(n_in: int, hidden: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, 1))
    return nn.Sequential(*layers)


class MlpRegressor:
    """The once-for-all accuracy predictor: 3 hidden layers of 400 ReLU units on the one-hot encoding.

    Trained with Adam and a cosine schedule on standardized targets (the scale of accuracies differs
    a lot between datasets); the target mean/std are kept with the weights.
    """

    name = "mlp"

    def __init__(self, hidden: tuple[int, ...] = (400, 400, 400), steps: int = 1500, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0) -> None:
        self.hidden, self.steps, self.batch_size = tuple(int(h) for h in hidden), int(steps), int(batch_size)
        self.lr, self.weight_decay, self.seed = float(lr), float(weight_decay), int(seed)
        self.net: nn.Sequential | None = None
        self.y_mean, self.y_std = 0.0, 1.0

    def fit(self, X: np.ndarray, y: np.ndarray) -> "MlpRegressor":
        # small-batch steps are latency-bound: one thread is faster, and far faster on a busy machine
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._fit(X, y)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, X: np.ndarray, y: np.ndarray) -> "MlpRegressor":
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = _mlp(X.shape[1], self.hidden)
        self.y_mean, self.y_std = float(np.mean(y)), float(np.std(y)) or 1.0
        xs = torch.as_tensor(X, dtype=torch.float32)
        ys = torch.as_tensor((np.asarray(y) - self.y_mean) / self.y_std, dtype=torch.float32)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        batch = min(self.batch_size, len(xs))
        self.net.train()
        for step in range(self.steps):
            for group in optimizer.param_groups:
                group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))
            idx = torch.randint(0, len(xs), (batch,), generator=generator)
            loss = nn.functional.mse_loss(self.net(xs[idx]).squeeze(1), ys[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.net.eval()
        return self

    @torch.inference_mode()
    def predict_tensor(self, x: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            raise RuntimeError("MlpRegressor.predict called before fit")
        return self.net(x).squeeze(1) * self.y_std + self.y_mean

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_tensor(torch.as_tensor(X, dtype=torch.float32)).numpy().astype(np.float64)

    # ------------------------------------------------------------ persistence (tensors only)
    def config(self) -> dict[str, Any]:
        return {"hidden": list(self.hidden), "steps": self.steps, "batch_size": self.batch_size, "lr": self.lr,
                "weight_decay": self.weight_decay, "seed": self.seed}

    def state(self) -> dict[str, torch.Tensor]:
        assert self.net is not None
        state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        state["y_mean"], state["y_std"] = torch.tensor(self.y_mean, dtype=torch.float64), torch.tensor(self.y_std, dtype=torch.float64)
        return state

    @staticmethod
    def from_state(config: dict[str, Any], state: dict[str, torch.Tensor], n_features: int) -> "MlpRegressor":
        model = MlpRegressor(**config)
        model.net = _mlp(n_features, model.hidden)
        model.y_mean, model.y_std = float(state.pop("y_mean")), float(state.pop("y_std"))
        model.net.load_state_dict(state)
        model.net.eval()
        return model


class SklearnRegressor:
    """A scikit-learn estimator under a short name."""

    def __init__(self, name: str, estimator: Any) -> None:
        self.name, self.estimator = name, estimator

    def fit(self, X: np.ndarray, y: np.ndarray) -> "SklearnRegressor":
        self.estimator.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict(X), dtype=np.float64)


def make_candidate(name: str, seed: int = 0, mlp_steps: int = 1500) -> Regressor:
    """A fresh, unfitted candidate by name (one of `CANDIDATES`)."""
    if name == "mlp":
        return MlpRegressor(steps=mlp_steps, seed=seed)
    if name == "gp":
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(length_scale=3.0, length_scale_bounds=(1e-1, 1e3)) + WhiteKernel(1e-2, (1e-6, 1e0))
        return SklearnRegressor(name, GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed))
    if name == "random-forest":
        from sklearn.ensemble import RandomForestRegressor

        return SklearnRegressor(name, RandomForestRegressor(n_estimators=200, max_features=0.3, random_state=seed, n_jobs=1))
    if name == "gradient-boosting":
        from sklearn.ensemble import GradientBoostingRegressor

        return SklearnRegressor(name, GradientBoostingRegressor(n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8, random_state=seed))
    if name == "ridge":
        from sklearn.linear_model import RidgeCV

        return SklearnRegressor(name, RidgeCV(alphas=np.logspace(-3, 3, 13)))
    raise ValueError(f"unknown predictor model {name!r}: choose from {', '.join(CANDIDATES)}")
