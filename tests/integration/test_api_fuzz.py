"""schemathesis against the live daemon (issue #15): bounded, deterministic generation from
/openapi.json, with a token holding every role. Done means no 5xx and every answer matching
the document (status code, content type, body schema)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.process import BIN, DaemonProcess

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(tmp_path: Path) -> None:
    d = DaemonProcess(tmp_path, env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/fuzz.db", "REMS_LOG__LEVEL": "WARNING", "REMS_HTTP__MAX_AUTH_FAILURES_PER_MINUTE": "100000"}).start()
    try:
        r = subprocess.run(
            [str(BIN.parent / "st"), "run", f"http://127.0.0.1:{d.http_port}/openapi.json", "-H", f"Authorization: Bearer {d.token}",
             "-n", "30", "--generation-deterministic", "--checks", CHECKS, "--no-color"],
            capture_output=True, text=True, timeout=240,
        )
    finally:
        d.stop()
    summary = r.stdout[-3000:]
    assert r.returncode == 0, summary
    assert " failed" not in summary.split("SUMMARY")[-1], summary
    assert "Traceback" not in d.output()
