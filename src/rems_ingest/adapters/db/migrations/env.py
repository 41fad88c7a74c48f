"""Alembic environment: migrations run on the connection the Store hands over (Store.migrate),
inside its transaction; ``rems-ingest db upgrade`` and daemon start-up share this path."""

from __future__ import annotations

from alembic import context

from rems_ingest.adapters.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
