"""Bring the database to the newest schema: `python -m db.migrate` (creates the database too)."""

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL

from vqueue.settings import get_settings

MIGRATIONS_PACKAGE = "migrations"

log = logging.getLogger(__name__)


def ensure_database(url: URL) -> None:
    """Create the database named in `url` if the server lacks it (local and CI setups)."""
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not exists:
                log.info("creating database %s", url.database)
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    finally:
        admin.dispose()


def reset_database(database_url: str) -> None:
    """Drop the database and build it anew (tests and benchmarks own theirs)."""
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    finally:
        admin.dispose()
    upgrade(database_url)


def upgrade(database_url: str) -> None:
    url = make_url(database_url)
    ensure_database(url)
    config = Config()
    config.set_main_option("script_location", f"{MIGRATIONS_PACKAGE}:")
    config.attributes["database_url"] = url.render_as_string(hide_password=False)
    command.upgrade(config, "head")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    upgrade(get_settings().database_url)


if __name__ == "__main__":
    main()
