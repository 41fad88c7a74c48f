"""CI holds the code's shape (issue #14): ruff, mypy --strict and the import-linter layer
contracts in pyproject.toml run with the suite, so the one test command checks them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(600)
def test_ruff_is_clean() -> None:
    r = _run(str(BIN / "ruff"), "check", "src", "tests", "bench")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.timeout(600)
def test_mypy_strict_is_clean() -> None:
    r = _run(str(BIN / "mypy"), "src")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.timeout(600)
def test_the_layer_contracts_hold() -> None:
    r = _run(str(BIN / "lint-imports"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
