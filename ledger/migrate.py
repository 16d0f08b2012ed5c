"""Owner-side work on the database: creating it, and running the Alembic migrations
programmatically, as the owner role."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from ledger.database import normalise_url
from ledger.errors import translate

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config(app_password: str | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["app_password"] = app_password
    return config


def ensure_database(maintenance_url: str, name: str) -> None:
    """Create the database ``name`` (UTF-8, from ``template0``) on the server of
    ``maintenance_url`` unless it exists; a database already there is left as it is.

    ``maintenance_url`` names a role that may create databases, connected to any
    existing database of the server. Raises translated ``LedgerError``s
    (``DatabaseUnavailable`` when the server cannot be reached)."""
    engine = create_engine(normalise_url(maintenance_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                # CREATE DATABASE takes no bind parameters: the name goes in as a quoted identifier
                connection.execute(
                    text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0")
                )
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    finally:
        engine.dispose()


def upgrade(owner_url: str, revision: str = "head", *, app_password: str | None = None) -> str:
    """Migrate the database at ``owner_url`` to ``revision``; return the revision reached."""
    return _run(owner_url, "upgrade", revision, app_password)


def downgrade(owner_url: str, revision: str) -> str:
    return _run(owner_url, "downgrade", revision, None)


def current_revision(owner_url: str) -> str | None:
    engine = create_engine(normalise_url(owner_url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    finally:
        engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert head is not None, "the migration directory has no head"
    return head


def _run(owner_url: str, action: str, revision: str, app_password: str | None) -> str:
    config = _config(app_password)
    engine = create_engine(normalise_url(owner_url))
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            if action == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
            connection.commit()
            reached = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    finally:
        engine.dispose()
    return reached or "base"
