"""`ofa export`: turn a chosen arch into files that run on the device.

Extracts the static subnet from the supernet, re-calibrates its BatchNorm, optionally fine-tunes
it with distillation from the largest subnet, then writes model.pt + arch.json, a parity-checked
ONNX file, an ONNX Runtime INT8 file and TensorRT engines, and measures each one
(export_report.json and a table).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ofa.cli import UsageError, add_common

log = logging.getLogger("ofa.export")

DEFAULT_FORMATS = "torch,onnx,ort-int8"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a subnet: PyTorch, ONNX, ONNX Runtime INT8, TensorRT", description=__doc__)
    parser.add_argument("--work", default="work", help="work directory (default: %(default)s)")
    parser.add_argument("--arch", help="the arch to export: a JSON file (e.g. WORK/specialized/NAME/chosen.json), max or min")
    parser.add_argument("--supernet", help="supernet checkpoint directory (default: WORK/supernet)")
    parser.add_argument("--data", help="dataset for BN re-calibration, parity, INT8 calibration and accuracy (default: the one the supernet was trained on)")
    parser.add_argument("--formats", default=DEFAULT_FORMATS, help="comma-separated subset of torch,onnx,ort-int8,tensorrt (default: %(default)s)")
    parser.add_argument("--precision", help="TensorRT engine precisions, subset of fp32,fp16,int8 (default: fp32,fp16)")
    parser.add_argument("--finetune", type=int, default=0, metavar="EPOCHS", help="fine-tune with distillation from the largest subnet for EPOCHS (default: 0)")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate (default: %(default)s)")
    parser.add_argument("--out", help="output directory (default: WORK/export/NAME, NAME from the arch file's folder)")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime timing (default: torch's)")
    parser.add_argument("--bn-images", type=int, default=2000, help="training images for BatchNorm re-calibration (default: %(default)s)")
    parser.add_argument("--calib-images", type=int, default=256, help="held-out training images for INT8 ranges (default: %(default)s)")
    parser.add_argument("--parity-images", type=int, default=500, help="validation images for the parity checks (default: %(default)s)")
    parser.add_argument("--max-test", type=int, help="evaluate accuracy on at most this many test images (default: all)")
    parser.add_argument("--latency-repeats", type=int, default=50, help="interleaved timing repeats per format (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size for evaluation and fine-tuning (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the validation split and image choices (default: %(default)s)")
    add_common(parser)
    parser.set_defaults(func=_export, _parser=parser)


def _export(args: argparse.Namespace) -> int:
    from export import (
        ExportImages, ExportInfo, ExportOptions, check_requirements, finetune, format_table, parse_formats, parse_precisions, run_export,
    )
    from ofa.bn import recalibrate_bn
    from ofa.data import BatchLoader, DataError, load_dataset
    from ofa.evaluate import normalization, shuffled_subset, spread_subset
    from ofa.supernet import Supernet

    if not args.arch:
        raise UsageError("--arch is required: a JSON file such as WORK/specialized/NAME/chosen.json, or max/min")
    for name in ("bn_images", "calib_images", "parity_images", "latency_repeats", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.finetune < 0:
        raise UsageError(f"--finetune must be 0 or more epochs, got {args.finetune}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    formats = parse_formats(args.formats)
    if args.precision and "tensorrt" not in formats:
        raise UsageError("--precision sets TensorRT engine precisions: add tensorrt to --formats (ONNX Runtime INT8 is --formats ort-int8)")
    precisions = parse_precisions(args.precision or "fp32,fp16")
    quiet = bool(args.quiet)

    work = Path(args.work)
    supernet = Supernet.load(Path(args.supernet) if args.supernet else work / "supernet")
    space = supernet.space
    arch = _load_arch(args.arch, space)
    out = Path(args.out) if args.out else work / "export" / _export_name(args.arch)
    options = ExportOptions(formats, precisions, args.threads, args.latency_repeats, args.batch_size, progress=not args.quiet)
    check_requirements(options, out, arch.resolution)  # e.g. TensorRT missing: say so before minutes of work
    trained_on = supernet.metadata.get("data") or {}
    spec = args.data or trained_on.get("source") or trained_on.get("spec")
    if not spec:
        raise UsageError("--data is required: the supernet does not record its dataset (e.g. --data digits or --data cifar10:PATH.tar.gz)")
    data_seed = trained_on.get("seed", (supernet.metadata.get("training") or {}).get("seed", args.seed))  # the training run's val split
    splits = load_dataset(spec, seed=int(data_seed), progress=not quiet)
    if splits.num_classes != supernet.n_classes:
        raise DataError(
            f"dataset {spec} has {splits.num_classes} classes but the supernet has {supernet.n_classes}: pass the dataset it was trained on"
        )
    mean, std = normalization(supernet)
    loader = lambda ds, train=False: BatchLoader(  # noqa: E731
        ds, args.batch_size, train=train, resolutions=[arch.resolution], seed=args.seed, mean=mean, std=std, hflip=splits.info["hflip"]
    )

    log.info("extracting %s and re-calibrating BatchNorm on %d training images", arch, min(args.bn_images, len(splits.train)))
    bn_split = shuffled_subset(splits.train, args.bn_images, args.seed)  # batches must mix classes
    model = supernet.extract(arch)
    recalibrate_bn(model, loader(bn_split), n_images=args.bn_images)
    finetuned = None
    if args.finetune:
        teacher = supernet.extract(space.max_arch())
        recalibrate_bn(teacher, loader(bn_split), n_images=args.bn_images)
        result = finetune(model, loader(splits.train, train=True), args.finetune, teacher=teacher, lr=args.lr, progress=not quiet)
        recalibrate_bn(model, loader(bn_split), n_images=args.bn_images)
        finetuned = result.to_dict()
        log.info("fine-tuned %d epochs in %.0f s (final loss %.3f)", result.epochs, result.seconds, result.final_loss)

    test = spread_subset(splits.test, args.max_test)  # every class, not the first ones
    images = ExportImages(
        parity=_images(loader(spread_subset(splits.val, args.parity_images))),
        calibration=_images(loader(shuffled_subset(splits.train, args.calib_images, args.seed))),
        test=loader(test),
    )
    info = ExportInfo(space, arch, tuple(mean), tuple(std), tuple(supernet.class_names) if supernet.class_names else tuple(splits.class_names))
    report = run_export(
        model, info, out, images, options, log=log.info,
        extra={"finetune": finetuned, "data": {"source": spec, "counts": splits.info.get("counts"), "bn_images": args.bn_images}},
    )
    print(format_table(report))
    print(f"wrote {out}/export_report.json")
    return 0


def _images(loader) -> "torch.Tensor":
    import torch

    return torch.cat([x for x, _, _ in loader]) if len(loader) else torch.empty(0)


def _load_arch(text: str, space):
    """`max`, `min` or an arch JSON file; a file that records another space's fingerprint is refused."""
    from ofa.commands.info import resolve_arch
    from ofa.space import ArchError

    path = Path(text)
    if text not in ("max", "min") and path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch file {path} is not valid JSON ({exc}); pass the chosen.json written by ofa specialize") from None
        recorded = (data.get("fingerprint") or data.get("space_fingerprint")) if isinstance(data, dict) else None
        if recorded and recorded != space.fingerprint():
            raise ArchError(
                f"arch file {path} was made for space {recorded}, the supernet's is {space.name} ({space.fingerprint()}): "
                "pass the matching --supernet or an arch of this space"
            )
    return resolve_arch(text, space)


def _export_name(arch_text: str) -> str:
    """`work/specialized/jetson-20ms/chosen.json` -> `jetson-20ms`; `x/my_arch.json` -> `my_arch`."""
    if arch_text in ("max", "min"):
        return arch_text
    path = Path(arch_text)
    return path.parent.name if path.stem == "chosen" and path.parent.name else path.stem
