"""Every command in README.md is valid and exercised, so the README stays true.

Each command line of the README (code blocks and inline `ofa ... --option` spans) must parse with
the real command-line parser, and must be listed below either as RUN (the slow test runs it, in a
copy of the quick demo's work directory, with the smaller inputs in SUBSTITUTIONS) or as covered by
a named test that runs the same command through the command line.  A new README command that is in
neither list fails `test_every_readme_command_is_exercised`.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ofa.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PROGRAMS = ("ofa ", "ofa-specialize ", "torchrun ")

# Run verbatim (after SUBSTITUTIONS) in a copy of the quick demo's work directory, in this order.
# The expected exit code is 0 unless given.
RUN: dict[str, int] = {
    "ofa eval --supernet work/supernet --arch max": 0,
    "ofa latency build --space cifar --runtime ort-cpu --device my-laptop --threads 1": 0,
    "ofa latency calibrate --device my-laptop --n 10": 0,
    "ofa latency validate --device my-laptop --n 100": 0,
    "ofa latency calibrate --device my-laptop --n 10 --validate 100": 0,
    "ofa latency predict --device my-laptop --arch max": 0,
    "ofa latency list": 0,
    "ofa predictor collect --supernet work/supernet --n 1000 --out work/predictor/samples.jsonl": 0,
    "ofa predictor fit --samples work/predictor/samples.jsonl --out work/predictor": 0,
    "ofa-specialize --work work --device my-laptop --latency 20ms": 0,
    "ofa-specialize --work work --latency jetson=20ms --latency cpu=40ms --params 5M --size 20MB --objectives accuracy,latency,params": 0,
    "ofa-specialize --device jetson --latency 20ms": 0,
    "ofa-specialize --work work --device my-laptop --latency 20ms --verify --top-k 5 --name laptop-20ms": 0,
    "ofa export --work work --arch work/specialized/laptop-20ms/chosen.json --formats torch,onnx,ort-int8": 0,
    # without TensorRT: exit 1 with the install hint and the trtexec command (checked below)
    "ofa export --work work --arch work/specialized/jetson-20ms/chosen.json --formats onnx,tensorrt --precision fp16": 1,
    "ofa space show --space cifar": 0,
    "ofa space sample --space cifar --n 5": 0,
    "ofa space count --space ofa-mbv3-w1.0 --arch max": 0,
    "ofa space show --space ofa-mbv3-w1.0 --json": 0,
}

# The demo work directory holds a `tiny` supernet trained on digits: point the cifar examples at it,
# and shrink counts that only change how long a command takes.
SUBSTITUTIONS = {
    "--space cifar --runtime": "--space tiny --runtime",
    "--n 1000": "--n 43",  # the samples file should hold 43: 3 more than the demo's 40. Longest first:
    "--n 100": "--n 8",  # "--n 10" is a prefix of the others
    "--n 10": "--n 4",
    "--validate 100": "--validate 8",
}

# Commands too slow or too environment-specific to run here, and the test that runs the same
# command through the command line.
COVERED_BY = {
    "ofa train --space cifar --data cifar10:../shared/data/cifar10-jpeg.tar.gz --schedule cifar-cpu --out work":
        "test_train.py::test_train_writes_supernet_report_and_log",
    "ofa train --space cifar --data cifar10:../shared/data/cifar10-jpeg.tar.gz --schedule cifar-cpu --budget 60m --out work":
        "test_train.py::test_budget_fits_the_run_to_the_time_and_a_repeat_with_its_scale_is_identical",
    "ofa train --space cifar --data /data/my-images --schedule cifar-cpu --out work":
        "test_train.py::test_trains_on_a_custom_image_folder_with_a_corrupt_image",
    "torchrun --standalone --nproc-per-node 4 -m ofa train --space ofa-mbv3-w1.0 --data /data/imagenet --schedule paper --out work":
        "test_train.py::test_torchrun_two_processes_agree_on_subnets_and_weights",
    "ofa latency bundle --space cifar --runtime ort-cpu --out bundle.tar.gz":
        "test_latency.py::test_bundle_runner_needs_no_torch_and_matches_a_local_build",
    "ofa latency import results.json --device jetson --out work/latency/jetson.json":
        "test_latency.py::test_bundle_runner_needs_no_torch_and_matches_a_local_build",
    "ofa latency import-mit tables/ --space ofa-mbv3-w1.2 --out work/latency/note10.json":
        "test_latency.py::test_mit_note10_tables_reproduce_the_reference",
    "ofa import-mit ofa_mbv3_d234_e346_k357_w1.0 --out work/supernet":
        "test_mit_import.py::test_import_mit_command_writes_our_checkpoint",
    "ofa demo": "test_end_to_end.py::test_summary_and_resume",
}


def readme_commands() -> list[str]:
    """Command lines in README.md: code-block lines and inline spans (outside tables) that start with a program."""
    text = README.read_text()
    commands: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        stripped = line.strip()
        if (fenced or line.startswith("    ")) and stripped.startswith(PROGRAMS) and "..." not in stripped:
            commands.append(" ".join(shlex.split(stripped, comments=True)))
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("|"))  # tables hold templates
    for span in re.findall(r"`((?:ofa|ofa-specialize) [^`]*--[^`]*)`", prose):
        commands.append(" ".join(span.split()))
    return list(dict.fromkeys(commands))


def _argv(command: str) -> list[str]:
    tokens = shlex.split(command)
    if tokens[0] == "ofa-specialize":
        return ["specialize", *tokens[1:]]
    if tokens[0] == "torchrun":
        return tokens[tokens.index("-m") + 2:]
    return tokens[1:]


def test_readme_has_the_commands_of_every_step():
    commands = readme_commands()
    for needed in ("ofa train", "ofa latency build", "ofa predictor fit", "ofa-specialize", "ofa export", "torchrun"):
        assert any(c.startswith(needed) for c in commands), needed


def test_every_readme_command_parses():
    parser, _ = build_parser()
    for command in readme_commands():
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                args = parser.parse_args(_argv(command))
        except SystemExit:
            pytest.fail(f"README command does not parse: {command}\n{stderr.getvalue()}")
        assert callable(getattr(args, "func", None)), command


def test_every_readme_command_is_exercised():
    for command in readme_commands():
        assert command in RUN or command in COVERED_BY, f"README command not exercised by any test: {command}"
    for command, test in COVERED_BY.items():
        file, name = test.split("::")
        assert f"def {name}(" in (REPO / "tests" / file).read_text(), f"{test} (covering `{command}`) does not exist"
    listed = set(readme_commands())
    stale = [c for c in [*RUN, *COVERED_BY] if c not in listed and c != "ofa demo"]
    assert not stale, f"commands listed here but no longer in README.md: {stale}"


def _substitute(command: str) -> str:
    for old, new in SUBSTITUTIONS.items():
        command = command.replace(old, new)
    return command


@pytest.mark.slow
def test_readme_commands_run_on_the_demo_work_directory(demo, tmp_path):
    work, _ = demo
    shutil.copytree(work, tmp_path / "work")
    done: list[str] = []
    for command, expected in RUN.items():
        if command.startswith("ofa-specialize") and "jetson" in command:
            # stand-ins for tables imported from those devices (the bundle flow is tested elsewhere)
            for device in ("jetson", "cpu"):
                shutil.copy(tmp_path / "work/latency/my-laptop.json", tmp_path / f"work/latency/{device}.json")
        argv = _argv(_substitute(command))
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "ofa", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        print(f"{time.perf_counter() - started:6.1f} s  {command}")
        assert result.returncode == expected, f"`{command}` exited {result.returncode}:\n{result.stderr[-2000:]}"
        if expected == 1:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        done.append(command)
    table = json.loads((tmp_path / "work/latency/my-laptop.json").read_text())
    assert table["calibration"]["n"] == 4 and table["validation"]["calibrated"]["n"] == 8
    samples = (tmp_path / "work/predictor/samples.jsonl").read_text().splitlines()
    assert len(samples) == len((work / "predictor/samples.jsonl").read_text().splitlines()) + 3
    chosen = json.loads((tmp_path / "work/specialized/laptop-20ms/chosen.json").read_text())
    assert chosen["verified"]["meets_budgets"] is True
    report = json.loads((tmp_path / "work/export/laptop-20ms/export_report.json").read_text())
    assert {row["format"] for row in report["results"]} == {"torch", "onnx", "ort-int8"}
    assert len(done) == len(RUN)
