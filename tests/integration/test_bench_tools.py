"""The benchmark tools the README documents still run (their figures are never asserted here:
numbers are measured by bench/, not by timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_pipeline_benchmark_runs_and_every_message_is_acked_aa() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pipeline.py"), "--messages", "60", "--senders", "4", "--patients", "20"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["messages"] == 60 and result["not_aa"] == 0
    assert result["msgs_per_s"] > 0 and result["cpu_us_per_msg"] > 0
