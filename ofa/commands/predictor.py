"""`ofa predictor`: collect (arch, accuracy) samples from a supernet, then fit and select the accuracy predictor."""
from __future__ import annotations

import argparse
import json
import logging
import os

from ofa.cli import UsageError, add_common

log = logging.getLogger("ofa")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predictor", help="collect accuracy samples and fit the accuracy predictor", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    collect = actions.add_parser(
        "collect", help="evaluate stratified subnets of a supernet on the validation split (append-only JSONL, resumable)",
        description="Draw subnets evenly over resolution and model size, re-calibrate BatchNorm on the validation split, "
        "measure top-1 on the validation split (never the test split), and append one JSON line per subnet. "
        "Re-running with the same --out resumes without evaluating any subnet twice. Under torchrun, one process per GPU.",
    )
    collect.add_argument("--supernet", default="work/supernet", help="supernet checkpoint directory (default: %(default)s)")
    collect.add_argument("--data", default=None, help="dataset spec (default: the one the supernet was trained on)")
    collect.add_argument("--data-cache", default=None, help="decoded-dataset cache directory (default: ~/.cache/ofa-data)")
    collect.add_argument("--n", type=int, default=1000, help="samples the file should hold (default: %(default)s)")
    collect.add_argument("--out", default="work/predictor/samples.jsonl", help="samples file (default: %(default)s)")
    collect.add_argument("--n-calib", type=int, default=2000, help="BN re-calibration images (default: %(default)s)")
    collect.add_argument("--calib-split", choices=("val", "train"), default="val", help="split for BN re-calibration (default: %(default)s)")
    collect.add_argument("--batch-size", type=int, default=200, help="evaluation batch size (default: %(default)s)")
    collect.add_argument("--workers", type=int, default=None, help="CPU worker processes (default: the number of CPU cores; 1 on GPU)")
    collect.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default: %(default)s)")
    collect.add_argument("--seed", type=int, default=0, help="seed of the arch plan (default: %(default)s)")
    add_common(collect)
    collect.set_defaults(func=_collect, _parser=collect)

    fit = actions.add_parser(
        "fit", help="fit candidate predictors, select by k-fold Kendall tau, report on a held-out test portion",
        description="Features: the once-for-all encoding. Candidates: the once-for-all MLP (3x400) and scikit-learn models. "
        "The candidate with the best k-fold Kendall tau (mean - std) is refitted and reported on a test portion that took "
        "no part in fitting or selection. Writes predictor.json, the model parameters and predicted_vs_measured.png.",
    )
    fit.add_argument("--samples", default="work/predictor/samples.jsonl", help="samples file from `collect` (default: %(default)s)")
    fit.add_argument("--out", default="work/predictor", help="predictor directory to write (default: %(default)s)")
    fit.add_argument("--models", default="mlp,gp,random-forest,gradient-boosting,ridge", help="comma-separated candidates (default: %(default)s)")
    fit.add_argument("--folds", type=int, default=5, help="k of the k-fold selection (default: %(default)s)")
    fit.add_argument("--test-fraction", type=float, default=0.2, help="held-out share of the samples (default: %(default)s)")
    fit.add_argument("--mlp-steps", type=int, default=1500, help="MLP training steps (default: %(default)s)")
    fit.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    add_common(fit)
    fit.set_defaults(func=_fit, _parser=fit)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _collect(args: argparse.Namespace) -> int:
    import torch

    from ofa.data import load_dataset
    from ofa.errors import OfaError
    from ofa.supernet import Supernet
    from predictors.collect import collect_samples

    for name in ("n", "n_calib", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise OfaError("--device cuda but no CUDA GPU is visible: pass --device cpu")
    net = Supernet.load(args.supernet)
    spec = args.data or (net.metadata.get("data") or {}).get("source")
    if not spec:
        raise UsageError(f"--data is required: {args.supernet} does not record the dataset it was trained on")
    splits = load_dataset(spec, cache_dir=args.data_cache, progress=not args.quiet)
    if splits.num_classes != net.n_classes:
        raise OfaError(f"dataset {spec} has {splits.num_classes} classes but the supernet classifies {net.n_classes}: pass the dataset it was trained on")
    gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    workers = 1 if gpu else (args.workers or os.cpu_count() or 1)
    result = collect_samples(net, splits, args.out, n=args.n, data=spec, seed=args.seed, n_calib=args.n_calib,
                             calib_split=args.calib_split, batch_size=args.batch_size, workers=workers,
                             device=("cuda" if gpu else "cpu") if int(os.environ.get("WORLD_SIZE", 1)) == 1 else None,
                             progress=not args.quiet)
    print(json.dumps({"samples": str(result.path), "total": result.total, "added": result.added,
                      "seconds_per_sample": round(result.seconds_per_sample, 4)}))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from predictors.fit import fit_predictor, write_fit
    from predictors.samples import read_samples

    if args.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {args.folds}")
    if not 0.0 < args.test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
    if args.mlp_steps < 1:
        raise UsageError(f"--mlp-steps must be at least 1, got {args.mlp_steps}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    samples = read_samples(args.samples)
    result = fit_predictor(samples, folds=args.folds, test_fraction=args.test_fraction, seed=args.seed, candidates=models,
                           mlp_steps=args.mlp_steps, progress=not args.quiet)
    write_fit(result, args.out)
    if not args.quiet:
        for s in result.selection:
            log.info("%-18s k-fold tau %.3f +- %.3f (score %.3f)", s.name, s.mean, s.std, s.score)
    t, b = result.test, result.macs_baseline
    print(json.dumps({"predictor": str(args.out), "model": result.predictor.model_name, "n_fit": result.n_fit, "n_test": t.n,
                      "test_kendall_tau": round(t.kendall_tau, 4), "test_spearman": round(t.spearman, 4),
                      "test_rmse_pct": round(t.rmse * 100, 4), "macs_baseline_kendall_tau": round(b.kendall_tau, 4)}))
    return 0
