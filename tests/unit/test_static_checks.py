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


# The shape a newcomer can hold in their head: no function above radon grade C (cyclomatic
# complexity 20) and no module far above 400 lines. An exception must be named here, with why.
MAX_COMPLEXITY = 20  # radon grade C ends at 20
MAX_LINES = 420
EXCEPTIONS: dict[str, str] = {}


def _sources() -> list[Path]:
    return [p for p in sorted((ROOT / "src").rglob("*.py")) if "migrations" not in p.parts]


def test_no_function_is_above_complexity_grade_c() -> None:
    from radon.complexity import cc_visit

    too_complex = []
    for path in _sources():
        for block in cc_visit(path.read_text()):
            name = f"{path.relative_to(ROOT)}:{block.fullname}"
            if block.complexity > MAX_COMPLEXITY and name not in EXCEPTIONS:
                too_complex.append(f"{name} ({block.complexity})")
    assert not too_complex, "split these into named steps: " + ", ".join(too_complex)


def test_no_module_is_far_above_400_lines() -> None:
    too_long = [f"{p.relative_to(ROOT)} ({n})" for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES and str(p.relative_to(ROOT)) not in EXCEPTIONS]
    assert not too_long, "give these a second room: " + ", ".join(too_long)
