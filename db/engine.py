"""Database engines: async for the API, sync for worker threads and migrations."""

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_async_engine(url: str, pool_size: int = 20) -> AsyncEngine:
    # A burst of stream connections each reads its job once: waiting a while for a pooled
    # connection beats failing them (an exhausted pool past the timeout answers 503).
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=30
    )


def make_sync_engine(url: str, pool_size: int = 5) -> Engine:
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=5
    )
