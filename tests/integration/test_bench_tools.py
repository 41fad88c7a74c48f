"""The benchmark tools the README documents still run (their figures are never asserted here:
numbers are measured by bench/, not by timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_pipeline_benchmark_runs_and_every_message_is_acked_aa() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--messages", "60", "--senders", "4", "--patients", "20"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["messages"] == 60 and result["not_aa"] == 0
    assert result["msgs_per_s"] > 0 and result["cpu_us_per_msg"] > 0


def test_bench_run_prints_our_figures_beside_the_peers_with_cpu_per_message(tmp_path: Path) -> None:
    table = tmp_path / "results.md"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run"), "--messages", "40", "--patients", "10", "--connections", "1", "--no-postgres", "--write", str(table)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    rows = [line.strip("|").split("|") for line in table.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    header, body = [c.strip() for c in rows[0]], [[c.strip() for c in r] for r in rows[1:]]
    assert header[-1] == "server CPU µs/msg"
    assert [r[0].split(" ")[0] for r in body] == ["python-hl7", "rems-ingest"]
    for r in body:
        assert r[header.index("errors")] == "0" and float(r[header.index("msg/s")]) > 0 and int(r[-1]) > 0
    ratios = [line for line in table.read_text().splitlines() if line.startswith("rems-ingest SQLite FULL") and "× peer" in line]
    assert 1 == len(ratios) and "p99 at 1 connection" in ratios[0]  # the ratios, per target


@pytest.mark.postgres
def test_bench_run_on_two_daemons_sharing_postgresql_checks_per_patient_order(tmp_path: Path, postgres_url: str) -> None:
    """--pg-processes 2: after each PostgreSQL target, every patient's alerts are in state-version
    order and every patient's version is its event count, whichever daemon took its messages."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run"), "--messages", "60", "--patients", "6", "--connections", "4", "--pg-processes", "2"],
        capture_output=True, text=True, timeout=400, check=True, env={**os.environ, "REMS_BENCH_PG_URL": postgres_url},
    ).stdout
    verdicts = {line.strip() for line in out.splitlines() if "per-patient order" in line}  # one per PostgreSQL target
    assert 2 == len(verdicts) and all("per-patient order holds" in v for v in verdicts), out


def test_the_history_benchmark_prints_each_arrival_pattern_by_history_length() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "history.py"), "--patients", "2", "--history", "20", "--step", "10"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    assert set(result) == {"in order", "late", "same time"}
    for rows in result.values():
        assert [(r["from"], r["to"]) for r in rows] == [(0, 10), (10, 20)]
        assert all(r["errors"] == 0 and r["msgs_per_s"] > 0 and r["cpu_us"] > 0 for r in rows)
    assert "| 10–20 |" in out.stdout


def test_the_memory_benchmark_prints_rss_after_each_chunk_and_the_growth() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory.py"), "--chunks", "2", "--chunk", "40", "--connections", "2", "--patients", "5"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout.strip().splitlines()
    chunks = [json.loads(line) for line in out if line.startswith("{")]
    assert [c["messages"] for c in chunks] == [40, 80] and all(c["errors"] == 0 and c["rss_mb"] > 0 for c in chunks)
    assert out[-1].startswith("RSS after 40 messages:") and "growth" in out[-1]
