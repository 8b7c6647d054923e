"""Schema migrations (Alembic), run by `callbridge db upgrade` and, for SQLite, by the
drainer when it starts (records/drainer.py): an embedded database needs no install step.

The scripts live in records/migrations inside the package, so an installed callbridge
migrates without an alembic.ini; `alembic_config` builds the configuration in code.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # env.py takes this connection instead of building an engine from a URL, so the URL
    # (and its password) never passes through Alembic's configuration or its logs.
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()
