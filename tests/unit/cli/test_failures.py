"""Every command, run as an operator runs it, fails in one clear line (issue #19): a bad
argument, a missing file, an unreachable store and an unreachable broker each give one
``rems-ingest: error:`` line on stderr, the exit code the README documents (2 usage or
configuration, 1 runtime), and never a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.process import BIN

ROOT = Path(__file__).resolve().parents[3]
FIX = ROOT / "fixtures"
PG_DOWN = "postgresql://rems@127.0.0.1:1/test"  # nothing listens on port 1
AMQP_DOWN = "amqp://guest:guest@127.0.0.1:1/"

BAD_ARGUMENT = [
    ("enroll X --population martian --therapy-start 2026-01-01", 2),
    ("enroll X --population ben --therapy-start 2026-01-01 --baseline-anc nan", 2),
    ("event X bogus --on 2026-01-01", 2),
    ("event X fever --on 2026-01-01", 2),  # a fever needs a temperature
    ("event X override --on 2026-01-01", 2),  # an override needs --by and --rationale
    ("dispense-check X --on 2026-13-45", 2),
    ("status", 2),
    ("sweep-overdue --now yesterday", 2),
    ("replay", 2),
    ("prune --older-than 0", 2),
    ("prune --older-than 99999999", 2),
    (f"send --port 99999 {FIX}/hl7/oru_251_anc_normal.hl7", 2),
    (f"send --timeout 0 {FIX}/hl7/oru_251_anc_normal.hl7", 2),
    ("simulate --therapy-start 2026-01-01 {tmp}/fever_abc.csv", 2),
    ("simulate --therapy-start 2026-01-01 {tmp}/latin1.csv", 2),
    ("import-patients {tmp}/latin1.csv", 2),
    ("check-config --bogus", 2),
    ("db upgrade --bogus", 2),
    ("serve --mllp-port many", 2),
    ("demo --bogus", 2),
]
MISSING_FILE = [
    ("simulate --therapy-start 2026-01-01 /nonexistent/history.csv", 2),
    ("import-patients /nonexistent/clinic.csv", 2),
    ("send /nonexistent/result.hl7", 2),
    ("validate /nonexistent/result.hl7", 2),
    ("--config /nonexistent/rems.toml status X", 2),
    ("send {tmp}/empty_folder", 2),
    ("status X", 1),  # no store at the configured SQLite path: never created by a read
]
STORE_DOWN = [
    ("status X", 1),
    ("dispense-check X", 1),
    ("enroll X --population general --therapy-start 2026-01-01", 1),
    ("event X interrupt --on 2026-01-01", 1),
    ("sweep-overdue", 1),
    (f"import-patients {FIX}/import/clinic_transfer.csv", 1),
    ("replay --id 1", 1),
    ("prune --older-than 30", 1),
    ("db upgrade", 1),
    ("check-config --connect", 1),
    ("serve --mllp-port 0 --http-port 0", 1),
]
BROKER_DOWN = [
    ("check-config --connect", 1),
]


def _files(tmp: Path) -> None:
    (tmp / "fever_abc.csv").write_text("2026-03-09,fever,abc\n")
    (tmp / "latin1.csv").write_bytes("id,authority,population,therapy_start\nM\xdcLLER,HOSP,general,2026-01-01\n".encode("latin-1"))
    (tmp / "empty_folder").mkdir()


def _run(line: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REMS_")}
    base.update({"REMS_STORE__URL": f"sqlite:///{tmp}/none/rems.db", **env})
    args = [str(BIN), *line.format(tmp=tmp).split()]
    return subprocess.run(args, cwd=tmp, env=base, capture_output=True, text=True, timeout=90)


def _one_line(r: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert "Traceback" not in r.stderr, f"{line}: traceback\n{r.stderr[-2000:]}"
    errors = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(errors) == 1 and errors[0].startswith("rems-ingest: error: "), f"{line}: stderr was\n{r.stderr[-2000:]}"
    assert code == r.returncode, f"{line}: exit {r.returncode}, README says {code}: {errors}"


@pytest.mark.parametrize(("line", "code"), BAD_ARGUMENT + MISSING_FILE)
def test_a_bad_argument_or_missing_file_is_one_line(line: str, code: int, tmp_path: Path) -> None:
    _files(tmp_path)
    _one_line(_run(line, tmp_path), code, line)


@pytest.mark.parametrize(("line", "code"), STORE_DOWN)
def test_an_unreachable_store_is_one_line_naming_it(line: str, code: int, tmp_path: Path) -> None:
    r = _run(line, tmp_path, REMS_STORE__URL=PG_DOWN)
    if line.startswith("serve"):  # the daemon's own JSON log lines go to stderr too; the verdict is the last line
        r = subprocess.CompletedProcess(r.args, r.returncode, r.stdout, "\n".join(x for x in r.stderr.splitlines() if not x.startswith("{")))
    if line.startswith("check-config"):  # the broker line: none configured, which is fine
        r = subprocess.CompletedProcess(r.args, r.returncode, r.stdout, "\n".join(x for x in r.stderr.splitlines() if "store" in x))
    _one_line(r, code, line)
    assert "127.0.0.1" in r.stderr and "port 1" in r.stderr


@pytest.mark.parametrize(("line", "code"), BROKER_DOWN)
def test_an_unreachable_broker_is_one_line_naming_it(line: str, code: int, tmp_path: Path) -> None:
    assert 0 == _run("db upgrade", tmp_path).returncode  # the store is fine: only the broker fails
    r = _run(line, tmp_path, REMS_AMQP__URL=AMQP_DOWN)
    _one_line(r, code, line)
    assert "broker amqp://guest:***@127.0.0.1:1/" in r.stderr


CONFIG_ERRORS = [
    ({"REMS_STORE__URL": "mysql://x"}, "check-config", "store.url: mysql is not supported"),
    ({"REMS_STORE__URL": "garbage"}, "db upgrade", "store.url is not a database URL"),
    ({"REMS_RULES__TIMEZONE": "Mars/Olympus"}, "check-config", "rules.timezone"),
    ({"REMS_STORE__URL_FILE": "/nonexistent/db-url"}, "serve", "store.url_file /nonexistent/db-url: No such file"),
    ({"REMS_AMQP__URL": "http://broker"}, "check-config", "amqp.url is not a broker URL"),
    ({"REMS_MLLP__TLS_CERT": "/nonexistent/cert.pem"}, "serve", "mllp.tls_cert and mllp.tls_key go together"),
]


@pytest.mark.parametrize(("env", "line", "says"), CONFIG_ERRORS)
def test_a_setting_that_would_break_later_is_refused_up_front(env: dict[str, str], line: str, says: str, tmp_path: Path) -> None:
    """check-config and every command refuse what used to pass and then break (issue #19)."""
    r = _run(line, tmp_path, **env)
    _one_line(r, 2, line)
    assert says in r.stderr


def test_a_command_that_succeeds_prints_no_log_line(tmp_path: Path) -> None:
    r = _run("db upgrade", tmp_path)
    assert 0 == r.returncode and "" == r.stderr and "schema at revision" in r.stdout
    r = _run("check-config", tmp_path)
    assert 0 == r.returncode and "" == r.stderr and f'"url": "sqlite:///{tmp_path}/none/rems.db"' in r.stdout


def test_bare_command_prints_the_help_not_a_squashed_error(tmp_path: Path) -> None:
    for line in ("", "db"):
        r = _run(line, tmp_path)
        assert 2 == r.returncode and "Usage: rems-ingest" in r.stderr and "Commands:" in r.stderr and "error:" not in r.stderr
