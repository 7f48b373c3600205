"""Shared test helpers: fixed seeds, paths to ../shared fixtures."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip the test with the reason if it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the ../shared fixtures are not beside this checkout)")
    return path


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm())


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """`ofa demo --profile quick` run once per session: (work directory, stdout).

    Tests that change files must work on a copy (shutil.copytree): the end-to-end tests read it.
    """
    root = tmp_path_factory.mktemp("e2e")
    work = root / "work"
    cmd = [sys.executable, "-m", "ofa", "demo", "--work", str(work), "--profile", "quick", "-q"]
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, result.stdout
