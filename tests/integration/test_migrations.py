"""Schema migrations (Alembic): the models and the migrations agree on both stores, old
databases are adopted, a newer database is refused, concurrent start-ups do not collide."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import create_engine, insert, text

from rems_ingest.adapters.db import schema
from rems_ingest.adapters.db.store import Store, StoreError
from rems_ingest.cli import cli


def _pg(url: str) -> str:
    return "postgresql+psycopg://" + url.removeprefix("postgresql://")


def _diff(url: str) -> list:  # type: ignore[type-arg]
    engine = create_engine(url)
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), schema.metadata)


def test_sqlite_schema_from_migrations_matches_the_models(tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path}/m.db").migrate()
    assert [] == _diff(f"sqlite:///{tmp_path}/m.db")


@pytest.mark.postgres
def test_postgres_schema_from_migrations_matches_the_models(postgres_url: str) -> None:
    Store(postgres_url).migrate()
    assert [] == _diff(_pg(postgres_url))


def test_a_database_from_before_migrations_is_adopted_and_keeps_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with create_engine(url).begin() as conn:
        schema.metadata.create_all(conn)
        conn.execute(insert(schema.schema_version).values(version=1))
        conn.execute(insert(schema.audit).values(at="2026-01-01", actor="old", action="enroll", detail="{}"))
    Store(url).migrate()
    with create_engine(url).connect() as conn:
        assert "0007" == conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert 1 == conn.execute(text("SELECT count(*) FROM audit")).scalar()


def test_a_database_migrated_by_a_newer_daemon_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    Store(url).migrate()
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(StoreError, match="newer than this daemon"):
        Store(url).migrate()


@pytest.mark.postgres
def test_daemons_starting_together_on_postgres_migrate_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            Store(postgres_url).migrate()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [] == errors
    assert [] == _diff(_pg(postgres_url))


def test_db_upgrade_command_reports_the_revision(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["db", "upgrade"], env={"REMS_STORE__URL": f"sqlite:///{tmp_path}/c.db"})
    assert 0 == r.exit_code, r.output
    assert "schema at revision 0007" in r.output
