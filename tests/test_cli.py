"""Command-line conventions: --help everywhere, exit codes, config files, units."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from ofa.cli import build_parser, main
from ofa.units import format_ms, parse_bytes, parse_count, parse_duration_ms


def _all_command_paths() -> list[list[str]]:
    parser, _ = build_parser()
    paths: list[list[str]] = []

    def walk(p: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    paths.append(prefix + [name])
                    walk(child, prefix + [name])

    walk(parser, [])
    return paths


def test_every_command_has_help(capsys):
    paths = _all_command_paths()
    assert ["space", "show"] in paths and ["import-mit"] in paths
    for path in [[]] + paths:
        with pytest.raises(SystemExit) as exit_info:
            main(path + ["--help"])
        assert exit_info.value.code == 0, path
        assert "usage:" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["space", "sample", "--n", "many"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


def test_failures_exit_1_with_one_line(capsys):
    assert main(["space", "show", "--space", "nonexistent"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown search space preset") and "\n" not in err


def test_config_file_supplies_options_and_flags_win(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("space: tiny\nn: 2\nseed: 3\n")
    assert main(["space", "sample", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["resolution"] in (16, 20, 24)
    assert main(["space", "sample", "--config", str(config), "--n", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    config.write_text("spaec: tiny\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["space", "sample", "--config", str(config)])
    assert exit_info.value.code == 2
    assert "unknown option(s) in config file: spaec" in capsys.readouterr().err


def test_config_keys_are_the_option_names(tmp_path):
    """`set:` in a config file (list or mapping) means `--set`, as a user reading `ofa train --help` would write it."""
    from ofa.cli import _apply_config, _load_config

    for text in ("set:\n  - teacher.epochs=2\n  - expand2.smallest=true\n", "set:\n  teacher.epochs: 2\n  expand2.smallest: true\n"):
        config = tmp_path / "train.yaml"
        config.write_text("space: tiny\ncheckpoint-every: 7\n" + text)
        _, subparsers = build_parser()
        _apply_config(subparsers["train"], _load_config(str(config)))
        args = subparsers["train"].parse_args([])
        assert args.overrides == ["teacher.epochs=2", "expand2.smallest=true"] and args.checkpoint_every == 7 and args.space == "tiny"


def test_units():
    assert parse_duration_ms("20ms") == 20.0
    assert parse_duration_ms("1.5s") == 1500.0
    assert parse_duration_ms("500us") == 0.5
    assert parse_count("5M") == 5_000_000 and parse_count("300M") == 300_000_000 and parse_count("1.2G") == 1_200_000_000
    assert parse_bytes("5MB") == 5_000_000
    for bad in ("20", "fast", "-3ms", "20 parsecs"):
        with pytest.raises(argparse.ArgumentTypeError, match="20ms, 1.5s, 500us"):
            parse_duration_ms(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="5M, 300M"):
        parse_count("5X")
    assert format_ms(0.25) == "250 us" and format_ms(12.345) == "12.35 ms"


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "ofa", "space", "count", "--space", "tiny", "--arch", "min"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] > 0
