"""``rems-ingest serve`` refuses a configuration that cannot work before it binds anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rems_ingest.cli import cli


def test_a_shared_mllp_port_on_sqlite_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMS_MLLP__REUSE_PORT", "true")
    monkeypatch.setenv("REMS_MLLP__PORT", "0")
    monkeypatch.setenv("REMS_HTTP__PORT", "0")
    r = CliRunner().invoke(cli, ["serve", "--store", f"sqlite:///{tmp_path}/rems.db"])

    assert 2 == r.exit_code
    assert ["rems-ingest: error: mllp.reuse_port needs a PostgreSQL store (daemons sharing a SQLite file only wait for each other's write lock)"] == r.output.splitlines()
    assert not (tmp_path / "rems.db").exists()  # refused before the store was even created
