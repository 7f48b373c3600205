"""`ofa train`: progressive shrinking of a supernet on your data; `ofa eval`: top-1 of one subnet.

    ofa train --space cifar --data cifar10:data/cifar10-jpeg.tar.gz --schedule cifar-cpu --out work
    ofa train ... --budget 60m                         # fit the schedule to an hour on this machine
    torchrun --nproc-per-node 2 -m ofa train ...        # multi-process (gloo on CPU, NCCL on GPU)
    ofa eval --supernet work/supernet --arch min --data cifar10:data/cifar10-jpeg.tar.gz

Re-running the same `ofa train` command into the same --out resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from ofa.cli import UsageError, add_common
from ofa.units import parse_minutes

log = logging.getLogger("ofa.train")


def register(sub: argparse._SubParsersAction) -> None:
    from ofa.train.schedule import SAMPLERS, SCHEDULES

    parser = sub.add_parser("train", help="train a supernet by progressive shrinking (resumable, torchrun-ready)", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="tiny", help="search space preset or .yaml/.json file (default: %(default)s)")
    parser.add_argument("--data", default="digits", help="digits, cifar10:PATH.tar.gz, or an ImageFolder path (default: %(default)s)")
    parser.add_argument("--schedule", default="cifar-cpu", choices=list(SCHEDULES), help="named schedule (default: %(default)s)")
    parser.add_argument("--sampler", default="progressive", choices=list(SAMPLERS),
                        help="progressive shrinking, uniform single-path sampling, or sandwich rule (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a schedule number, e.g. teacher.epochs=3, kernel.lr=0.02, batch_size=64 (repeatable)")
    parser.add_argument("--budget", type=parse_minutes, metavar="DURATION",
                        help="fit the run to this wall-clock time on this machine, e.g. 60m or 1.5h: a short probe of every "
                             "phase sets epoch_scale (shortcut for --set minutes=N)")
    parser.add_argument("--batch-size", type=int, help="images per step per process (shortcut for --set batch_size=N)")
    parser.add_argument("--kd-ratio", type=float, help="weight of the distillation loss (shortcut for --set kd_ratio=X)")
    parser.add_argument("--out", default="work",
                        help="work directory: writes OUT/supernet, OUT/train_report.json, OUT/train_log.jsonl (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and subnet sampling (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=100, metavar="STEPS",
                        help="steps between checkpoints (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--resume", action="store_true",
                        help="require a run in --out and continue it (re-running the same command also resumes)")
    parser.add_argument("--force", action="store_true", help="discard whatever run --out holds and start over")
    parser.add_argument("--data-cache", help="decoded-image cache directory (default: $OFA_DATA_CACHE or ~/.cache/ofa-data)")
    parser.add_argument("--threads", type=int, help="CPU threads per process (default: torch's choice)")
    add_common(parser)
    parser.set_defaults(func=_train, _parser=parser)

    ev = sub.add_parser("eval", help="top-1 of one subnet: BN re-calibration on the val split, accuracy on the test split",
                        description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--supernet", default="work/supernet", help="supernet checkpoint directory (default: %(default)s)")
    ev.add_argument("--arch", default="max", help="max, min, or an arch JSON file (default: %(default)s)")
    ev.add_argument("--data", help="dataset spec (default: the one the supernet was trained on)")
    ev.add_argument("--n-calib", type=int, default=2000, help="images for BN re-calibration (default: %(default)s)")
    ev.add_argument("--max-images", type=int, help="evaluate at most this many test images (default: all)")
    ev.add_argument("--batch-size", type=int, default=200, help="default: %(default)s")
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda when available")
    ev.add_argument("--data-cache", help="decoded-image cache directory")
    add_common(ev)
    ev.set_defaults(func=_eval, _parser=ev)


def _train(args: argparse.Namespace) -> int:
    from ofa.space import SearchSpace
    from ofa.train import TrainConfig, make_schedule, train
    from ofa.train.schedule import ScheduleError

    if args.checkpoint_every < 0:
        raise UsageError(f"--checkpoint-every must be >= 0 (0: only at phase ends), got {args.checkpoint_every}")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if args.resume and args.force:
        raise UsageError("--resume and --force contradict each other: --force starts over")
    overrides = list(args.overrides or [])
    if args.budget is not None:
        overrides.append(f"minutes={args.budget!r}")
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    if args.kd_ratio is not None:
        overrides.append(f"kd_ratio={args.kd_ratio}")
    try:
        schedule = make_schedule(args.schedule, args.sampler, overrides)
    except ScheduleError as exc:  # a bad --set / config value is a usage error (exit 2)
        raise UsageError(str(exc)) from None
    config = TrainConfig(
        space=SearchSpace.resolve(args.space), data=args.data, schedule=schedule, out=Path(args.out),
        sampler=args.sampler, seed=args.seed, checkpoint_every=args.checkpoint_every, device=args.device,
        resume=args.resume, force=args.force, progress=not args.quiet, data_cache=args.data_cache, threads=args.threads,
    )
    outcome = train(config)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    phases = {name: entry.get("accuracy") for name, entry in outcome.report.get("phases", {}).items()}
    print(json.dumps({"supernet": str(outcome.supernet_dir), "resumed": outcome.resumed, "accuracy_after_phase": phases}))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from ofa.commands.info import resolve_arch
    from ofa.data import load_dataset
    from ofa.errors import OfaError
    from ofa.evaluate import evaluate_arch
    from ofa.supernet import Supernet

    for name in ("n_calib", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_images is not None and args.max_images < 1:
        raise UsageError(f"--max-images must be at least 1, got {args.max_images}")
    net = Supernet.load(args.supernet)
    spec = args.data or (net.metadata.get("data") or {}).get("source")
    if not spec:
        raise UsageError(f"--data is required: {args.supernet} does not record the dataset it was trained on")
    arch = resolve_arch(args.arch, net.space)
    splits = load_dataset(spec, cache_dir=args.data_cache, progress=not args.quiet)
    if splits.num_classes != net.n_classes:
        raise OfaError(
            f"dataset {spec} has {splits.num_classes} classes but the supernet classifies {net.n_classes}: "
            "pass the dataset it was trained on"
        )
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    result = evaluate_arch(net, arch, splits.val, splits.test, n_calib=args.n_calib, batch_size=args.batch_size,
                           device=device, max_images=args.max_images)
    costs = net.space.count(arch)
    print(json.dumps({"arch": arch.key(), "top1": round(result.top1, 5), "loss": round(result.loss, 5), "n": result.n,
                      "params": costs.params, "macs": costs.macs, "data": spec,
                      "evaluation": "BN re-calibrated on the val split, top-1 on the test split"}))
    return 0
