"""The `ofa` command line: the one place that wires the packages together.

Each subcommand lives in a small module exposing `register(subparsers)`; it adds its parser and
sets `func=handler`.  Common behaviour lives here:
- `--config FILE` (YAML or JSON): a mapping of option names (as on the command line, `-` or `_`)
  to values; explicit command-line flags win.  An unknown key is a usage error.
- `-q/--quiet`, `-v/--verbose` on every command.
- exit code 2 on usage errors (argparse), 1 on a failure (`OfaError`: one line on stderr), 0 on success.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ofa.errors import OfaError

__all__ = ["main", "add_common", "UsageError"]

# modules that provide subcommands, in the order `ofa --help` lists them
COMMAND_MODULES = (
    "ofa.commands.info",
    "ofa.commands.import_mit",
    "ofa.commands.train",
    "ofa.commands.specialize",
    "ofa.commands.export",
    "ofa.commands.latency",
    "ofa.commands.predictor",
    "ofa.commands.demo",
)

log = logging.getLogger("ofa")


class UsageError(Exception):
    """A command-line usage problem found after parsing (exit code 2)."""


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every command has."""
    parser.add_argument("--config", metavar="FILE", help="YAML/JSON file of option values (flags given on the command line win)")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="only print errors and the final result")
    noise.add_argument("-v", "--verbose", action="store_true", help="print debug details and full tracebacks")


def _load_config(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {path} does not exist")
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(file.read_text())
        else:
            data = json.loads(file.read_text())
    except Exception as exc:
        raise UsageError(f"config file {path} is not valid YAML/JSON: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _config_path(argv: Sequence[str]) -> str | None:
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith("--config="):
            return token.split("=", 1)[1]
    return None


def _apply_config(parser: argparse.ArgumentParser, config: dict[str, Any]) -> None:
    """Config values become defaults of the parser they belong to, after type conversion."""
    # a key is an option's name as on the command line (`set`, `checkpoint_every`) or its dest (`overrides`)
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    names = {o.lstrip("-").replace("-", "_"): a for a in actions.values() for o in a.option_strings if o.startswith("--")}
    unknown = sorted(set(config) - set(actions) - set(names))
    if unknown:
        raise UsageError(f"unknown option(s) in config file: {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    defaults = {}
    for key, value in config.items():
        action = names.get(key) or actions[key]
        key = action.dest
        if isinstance(value, dict) and isinstance(action, argparse._AppendAction):  # set: {teacher.epochs: 2}
            value = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items()]
        convert = action.type
        try:
            if convert is not None and isinstance(value, list):
                value = [convert(str(v)) for v in value]
            elif convert is not None and value is not None and not isinstance(value, bool):
                value = convert(str(value))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise UsageError(f"config option {key}: {exc}") from None
        if action.choices is not None and value not in action.choices:
            raise UsageError(f"config option {key}: {value!r} not in {list(action.choices)}")
        defaults[key] = value
    parser.set_defaults(**defaults)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="ofa",
        description="Once-for-all: train one supernet, then specialize subnets for each device without retraining.",
    )
    from ofa import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser, dict(sub.choices)


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


def run(parser: argparse.ArgumentParser, subparsers: dict[str, argparse.ArgumentParser], argv: Sequence[str]) -> int:
    try:
        config_path = _config_path(argv)
        if config_path is not None:
            config = _load_config(config_path)
            command = next((t for t in argv if t in subparsers), None)
            target = subparsers[command] if command else parser
            # nested commands (e.g. `ofa latency build`): apply to the innermost parser named in argv
            while command is not None:
                nested = _nested(target)
                command = next((t for t in argv if t in nested), None)
                if command:
                    target = nested[command]
            _apply_config(target, config)
    except UsageError as exc:
        parser.error(str(exc))
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int | None] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    _setup_logging(args)
    try:
        return int(func(args) or 0)
    except UsageError as exc:
        (getattr(args, "_parser", None) or parser).error(str(exc))
    except OfaError as exc:
        if getattr(args, "verbose", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def _nested(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ofa` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    return run(parser, subparsers, argv)


def entry() -> None:
    sys.exit(main())
