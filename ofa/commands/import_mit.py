"""`ofa import-mit`: convert a published once-for-all MobileNetV3 checkpoint into our format."""
from __future__ import annotations

import argparse
import logging

from ofa.cli import add_common
from ofa.mit import import_mit
from ofa.space import SearchSpace
from ofa.units import format_count

log = logging.getLogger("ofa")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import-mit",
        help="import a published OFA MobileNetV3 supernet checkpoint",
        description="Read a checkpoint of MIT's once-for-all MobileNetV3 supernets (e.g. ofa_mbv3_d234_e346_k357_w1.0), "
        "detect its width from the tensor shapes, and write our checkpoint directory (weights.pt + supernet.json).",
    )
    parser.add_argument("checkpoint", help="path of the published checkpoint file")
    parser.add_argument("--out", default="work/supernet", help="checkpoint directory to write (default: %(default)s)")
    parser.add_argument("--space", default=None, help="space of the checkpoint (default: detected, ofa-mbv3-w1.0 or -w1.2)")
    add_common(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    space = SearchSpace.resolve(args.space) if args.space else None
    net = import_mit(args.checkpoint, space)
    net.save(args.out)
    n_params = sum(p.numel() for p in net.parameters())
    if not args.quiet:
        print(f"imported {args.checkpoint} as space {net.space.name} ({net.n_classes} classes, {format_count(n_params)} weights) -> {args.out}")
    return 0
