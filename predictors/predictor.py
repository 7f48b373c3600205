"""A fitted accuracy predictor: save to / load from a directory, predict top-1 of many archs at once.

Directory layout: `predictor.json` (metadata, chosen model, metrics, space) plus the parameters,
`model.pt` (PyTorch tensors, loaded with `weights_only=True`) for the MLP or `model.skops` for a
scikit-learn model (skops refuses any type outside an allow-list, so no code runs on load).
A predictor is a file people share: nothing here unpickles.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ofa.errors import OfaError
from ofa.io import atomic_torch_save, atomic_write, atomic_write_json
from ofa.space import Arch, SearchSpace
from predictors.features import Encoding
from predictors.models import MlpRegressor, Regressor, SklearnRegressor

__all__ = ["AccuracyPredictor", "PredictorError", "FORMAT"]

FORMAT = "ofa-predictor/1"
# types a saved scikit-learn candidate may hold beyond skops' defaults; anything else is refused
_SKOPS_ALLOWED = {
    "sklearn.gaussian_process._gpr.GaussianProcessRegressor",
    "sklearn.gaussian_process.kernels.ConstantKernel",
    "sklearn.gaussian_process.kernels.RBF",
    "sklearn.gaussian_process.kernels.WhiteKernel",
    "sklearn.gaussian_process.kernels.Product",
    "sklearn.gaussian_process.kernels.Sum",
    "sklearn.gaussian_process.kernels.Hyperparameter",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.dummy.DummyRegressor",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn.linear_model._ridge.RidgeCV",
    "sklearn.linear_model._ridge._RidgeGCV",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
    "collections.OrderedDict",
    "builtins.getattr",
    "builtins.slice",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.float64",
    "numpy.int64",
}


class PredictorError(OfaError, ValueError):
    """A predictor directory is missing, corrupt, or belongs to another search space."""


class AccuracyPredictor:
    """Predicts the top-1 (fraction in [0, 1]) of subnets of one space from their encoding."""

    def __init__(self, space: SearchSpace, model: Regressor, metadata: dict[str, Any] | None = None) -> None:
        self.space = space
        self.model = model
        self.encoding = Encoding.for_space(space)
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def fingerprint(self) -> str:
        """The search space fingerprint this predictor belongs to."""
        return self.space.fingerprint()

    @property
    def model_name(self) -> str:
        return self.model.name

    # ------------------------------------------------------------------ prediction
    def predict(self, archs: Sequence[Arch], batch_size: int = 65536) -> np.ndarray:
        """Predicted top-1 of each arch (float64 array), in order; archs of another space are refused."""
        return self.predict_codes(self.space.encode(list(archs)), batch_size)

    def predict_codes(self, codes: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Predicted top-1 from `space.encode` codes [N, code_width]; batched to bound memory."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.encoding.code_width:
            raise PredictorError(
                f"codes of shape {list(codes.shape)} do not belong to space {self.space.name!r} "
                f"(expected [N, {self.encoding.code_width}]): encode archs with this predictor's space"
            )
        out = np.empty(len(codes), dtype=np.float64)
        mlp = isinstance(self.model, MlpRegressor)
        for start in range(0, len(codes), batch_size):
            x = self.encoding.features(codes[start : start + batch_size])
            if mlp:
                out[start : start + len(x)] = self.model.predict_tensor(torch.from_numpy(x)).numpy()
            else:
                out[start : start + len(x)] = self.model.predict(x)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write `predictor.json` and the model parameters (tensors or skops), each atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(self.model, MlpRegressor):
            params_file, config = "model.pt", self.model.config()
            atomic_torch_save(directory / params_file, self.model.state())
        elif isinstance(self.model, SklearnRegressor):
            import skops.io as sio

            params_file, config = "model.skops", self.model.estimator.get_params()
            config = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool, type(None)))}
            atomic_write(directory / params_file, lambda p: sio.dump(self.model.estimator, p))
        else:
            raise TypeError(f"cannot save a {type(self.model).__name__}")
        atomic_write_json(
            directory / "predictor.json",
            {
                "format": FORMAT,
                "model": self.model.name,
                "model_config": config,
                "params_file": params_file,
                "n_features": self.encoding.n_features,
                "space": self.space.to_dict(),
                "space_fingerprint": self.fingerprint,
                **{k: v for k, v in self.metadata.items() if k not in ("format", "model", "space", "space_fingerprint")},
            },
        )
        return directory

    @staticmethod
    def load(directory: str | Path, space: SearchSpace | None = None) -> "AccuracyPredictor":
        """Read a predictor directory; refuse one fitted for another `space` (when given)."""
        directory = Path(directory)
        meta_path = directory / "predictor.json"
        if not meta_path.is_file():
            raise PredictorError(f"{directory} is not a predictor (no predictor.json): fit one with `ofa predictor fit --out {directory}`")
        try:
            meta = json.loads(meta_path.read_text())
            saved_space = SearchSpace.from_dict(meta["space"])
            name, params_file = str(meta["model"]), str(meta["params_file"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise PredictorError(f"{meta_path} is corrupt ({exc!r}); fit the predictor again") from None
        if meta.get("format") != FORMAT:
            raise PredictorError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}; fit the predictor again")
        if meta.get("space_fingerprint") != saved_space.fingerprint():
            raise PredictorError(f"{meta_path}: space fingerprint does not match its space definition; the file was edited or is corrupt")
        if space is not None and space.fingerprint() != saved_space.fingerprint():
            raise PredictorError(
                f"predictor {directory} was fitted for space {saved_space.name!r} ({saved_space.fingerprint()}), "
                f"not {space.name!r} ({space.fingerprint()}): fit a predictor on samples of this space's supernet"
            )
        params = directory / params_file
        if not params.is_file() or params.parent != directory or params_file not in ("model.pt", "model.skops"):
            raise PredictorError(f"{params} is missing; copy the whole predictor directory or fit it again")
        n_features = Encoding.for_space(saved_space).n_features
        try:
            if name == "mlp":
                state = torch.load(params, map_location="cpu", weights_only=True)
                model: Regressor = MlpRegressor.from_state(dict(meta.get("model_config") or {}), state, n_features)
            else:
                model = SklearnRegressor(name, _load_skops(params, name))
        except PredictorError:
            raise
        except Exception as exc:  # truncated file, wrong shapes, ...
            raise PredictorError(f"{params} is corrupt or does not match predictor.json ({type(exc).__name__}: {exc}); fit the predictor again") from None
        metadata = {k: v for k, v in meta.items() if k not in ("space",)}
        return AccuracyPredictor(saved_space, model, metadata)


_ESTIMATORS = {
    "gp": "GaussianProcessRegressor",
    "random-forest": "RandomForestRegressor",
    "gradient-boosting": "GradientBoostingRegressor",
    "ridge": "RidgeCV",
}


def _load_skops(path: Path, name: str) -> Any:
    """skops load trusting only its safe defaults plus the types our candidates hold; check the estimator class."""
    import skops.io as sio

    if name not in _ESTIMATORS:
        raise PredictorError(f"{path.parent / 'predictor.json'} names an unknown model {name!r}; fit the predictor again")
    untrusted = sio.get_untrusted_types(file=path)
    unknown = sorted(set(untrusted) - _SKOPS_ALLOWED)
    if unknown:
        raise PredictorError(f"{path} holds types a predictor never contains ({', '.join(unknown[:3])}); refusing to load it")
    estimator = sio.load(path, trusted=untrusted)
    if type(estimator).__name__ != _ESTIMATORS[name]:
        raise PredictorError(f"{path} holds a {type(estimator).__name__}, not the {_ESTIMATORS[name]} predictor.json names; fit the predictor again")
    return estimator
