"""A conformance case through ``rems-ingest simulate --json`` (the pure rules, no I/O)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from rems_ingest.cli import cli
from tests.conformance.cases import Case


def observe(case: Case) -> dict[str, Any]:
    """What a clinician would read after the case's last line (keys as in Case.expect)."""
    lines = list(case.lines)
    dispense_on = case.expect.get("dispense", (None,))[0]
    if dispense_on:
        lines.append(f"{dispense_on},dispense")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.csv"
        path.write_text("\n".join(lines) + "\n")
        args = ["simulate", str(path), "--json", "--therapy-start", case.start.isoformat(), "--population", case.population]
        if case.baseline is not None:
            args += ["--baseline-anc", str(case.baseline)]
        if case.transfer:
            args += ["--monitoring-frequency", case.transfer]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.output.splitlines() if x.strip()]
    seen: dict[str, Any] = {}
    if dispense_on:
        seen["dispense"] = (dispense_on, rows.pop()["dispense"]["authorized"])
    last = rows[-1]
    state_rows = [r for r in rows if "error" not in r]
    final = state_rows[-1]
    seen["refused"] = "error" in last
    alerts = [] if "error" in last else last["alerts"]
    seen.update(
        phase=final.get("phase"),
        cat=final["category"] or None,
        tx=final["treatment"],
        freq=final["frequency"],
        due=final["next_due"] or None,
        action=final["action"],
        alerts={k for k in alerts if not k.startswith("pharmacy.")},
        pharmacy={k for k in alerts if k.startswith("pharmacy.")},
        severity={} if "error" in last else last["severity"],
    )
    return seen


def compare(case: Case, seen: dict[str, Any]) -> list[str]:
    """The expectations ``seen`` does not meet, in words (empty: the case passes)."""
    wrong = []
    for key, want in case.expect.items():
        got = seen.get(key)
        if key == "severity":
            got = {k: v for k, v in (got or {}).items() if k in want}
        if key == "refused":
            got = bool(got)
        if got != want:
            wrong.append(f"{key}: expected {want!r}, got {got!r}")
    return wrong
