"""Alembic's environment for records/migrate.py: always online, on the engine it is given."""

from alembic import context

from records.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
