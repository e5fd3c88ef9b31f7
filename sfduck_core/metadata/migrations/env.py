"""Alembic's environment for sfduck's metadata database, run in code (see
sfduck_core.metadata.database.upgrade): the caller hands over an open connection, no alembic.ini."""

from __future__ import annotations

from alembic import context

from sfduck_core.metadata.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  version_table="alembic_version")
with context.begin_transaction():
    context.run_migrations()
