"""Alembic environment: runs online against the URL handed over by db.migrate."""

from alembic import context
from sqlalchemy import create_engine, pool

from db.schema import metadata
from vqueue.settings import get_settings

url = context.config.attributes.get("database_url") or get_settings().database_url
connectable = create_engine(url, poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
