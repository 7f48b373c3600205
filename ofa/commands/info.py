"""`ofa space`: inspect a search space, sample archs, count their costs."""
from __future__ import annotations

import argparse
import json

from ofa.cli import add_common
from ofa.space import Arch, SearchSpace
from ofa.units import format_count


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("space", help="inspect a search space: show, sample, count", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="print a space's definition and fingerprint")
    show.add_argument("--space", default="ofa-mbv3-w1.0", help="preset name, .yaml/.json space file, or a supernet directory (default: %(default)s)")
    show.add_argument("--json", action="store_true", help="print the full definition as JSON")
    add_common(show)
    show.set_defaults(func=_show)
    sample = actions.add_parser("sample", help="print random archs as JSON lines")
    sample.add_argument("--space", default="ofa-mbv3-w1.0", help="preset name, .yaml/.json space file, or a supernet directory (default: %(default)s)")
    sample.add_argument("--n", type=int, default=1, help="how many (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0)
    add_common(sample)
    sample.set_defaults(func=_sample)
    count = actions.add_parser("count", help="parameters and MACs of an arch (max, min or ARCH.json)")
    count.add_argument("--space", default="ofa-mbv3-w1.0", help="preset name, .yaml/.json space file, or a supernet directory (default: %(default)s)")
    count.add_argument("--arch", default="max", help="max, min, or a JSON file (default: %(default)s)")
    add_common(count)
    count.set_defaults(func=_count)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def resolve_arch(text: str, space: SearchSpace) -> Arch:
    """`max`, `min`, or a path to an arch JSON file (ours, the reference's, or a chosen.json)."""
    if text == "max":
        return space.max_arch()
    if text == "min":
        return space.min_arch()
    return Arch.load(text, space)


def _show(args: argparse.Namespace) -> int:
    space = SearchSpace.resolve(args.space)
    if args.json:
        print(json.dumps({**space.to_dict(), "fingerprint": space.fingerprint()}, indent=2))
        return 0
    lo, hi = space.count(space.min_arch()), space.count(space.max_arch())
    print(space.describe())
    print(f"fingerprint {space.fingerprint()}")
    print(f"params {format_count(lo.params)}..{format_count(hi.params)}, MACs {format_count(lo.macs)}..{format_count(hi.macs)}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    space = SearchSpace.resolve(args.space)
    for arch in space.sample_many(args.seed, args.n):
        print(arch.to_json())
    return 0


def _count(args: argparse.Namespace) -> int:
    space = SearchSpace.resolve(args.space)
    arch = resolve_arch(args.arch, space)
    costs = space.count(arch)
    print(json.dumps({"arch": arch.key(), "params": costs.params, "macs": costs.macs}))
    return 0
