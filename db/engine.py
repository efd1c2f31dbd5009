"""Database engines: async for the API, sync for worker threads and migrations."""

import time
from typing import Any

from sqlalchemy import Engine, TextClause, create_engine, event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# A pooled connection that has been idle this long is pinged before it is used: it may have
# died meanwhile (Postgres restarted, an idle timeout on the way). One used a moment ago is
# not. SQLAlchemy's pool_pre_ping pings on every checkout, and in a burst that is one more
# round trip before each claim, result write and submit, each a wait for the GIL beside a
# worker's engine loop. A connection that dies within this window fails its statement, as
# one that dies between a ping and its statement always could.
PING_AFTER_IDLE_S = 5.0


def make_async_engine(
    url: str, pool_size: int = 20, ping_after_idle_s: float = PING_AFTER_IDLE_S
) -> AsyncEngine:
    # A burst of stream connections each reads its job once: waiting a while for a pooled
    # connection beats failing them (an exhausted pool past the timeout answers 503).
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=30)
    ping_when_idle(engine.sync_engine, ping_after_idle_s)
    return engine


def make_sync_engine(
    url: str,
    pool_size: int = 5,
    ping_after_idle_s: float = PING_AFTER_IDLE_S,
    idle_in_transaction_s: float | None = None,
) -> Engine:
    """`idle_in_transaction_s`: Postgres ends a session of this engine that sits in a
    transaction this long without a statement, so that a process stopped mid-transaction (a
    SIGSTOP, a frozen host) does not hold its row and advisory locks until it wakes."""
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=5)
    ping_when_idle(engine, ping_after_idle_s)
    if idle_in_transaction_s is not None:
        end_idle_transactions(engine, idle_in_transaction_s)
    return engine


def end_idle_transactions(engine: Engine, idle_s: float) -> None:
    timeout_ms = max(1, round(idle_s * 1000))

    def connected(dbapi_connection: Any, record: Any) -> None:
        # A session setting, set once per connection: through a plain `SET`, which a pooler
        # in front of Postgres passes on, where it may refuse startup options.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        dbapi_connection.commit()

    event.listen(engine, "connect", connected)


def ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Ping a pooled connection on checkout only if it was returned over `idle_s` ago; a dead
    one is replaced, and every connection pooled before it too (as pool_pre_ping does)."""
    dialect = engine.dialect

    def returned(dbapi_connection: Any, record: Any) -> None:
        # `info` belongs to the DBAPI connection: a new one starts without it, fresh.
        record.info["returned_at"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < idle_s:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError() from error  # the pool retries with a new one
            raise

    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", checked_out)


def ping() -> TextClause:
    """The cheapest statement that proves the database answers (GET /ready)."""
    return text("SELECT 1")
