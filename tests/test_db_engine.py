"""db/engine.py against real Postgres: a pooled connection is pinged only after it has been
idle, and one that died while idle is replaced before a statement needs it; a process stopped
in a transaction loses it (and its locks) after the idle limit."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import make_async_engine, make_sync_engine
from db.locks import exclusive_round
from tests.conftest import DIRECT_DATABASE_URL

IDLE_S = 0.3


def queries_sent(engine: Engine, trace: Path, idle_s: float = 0.0) -> list[str]:
    """The queries the pool's one connection sent to run `SELECT 2` from its checkout, after
    lying in the pool for `idle_s`."""
    with engine.connect() as conn:
        raw: Any = conn.connection.dbapi_connection
    time.sleep(idle_s)
    with trace.open("w") as sink:
        raw.pgconn.trace(sink.fileno())
        try:
            with engine.connect() as conn:
                assert conn.connection.dbapi_connection is raw  # the same pooled connection
                conn.execute(text("SELECT 2"))
        finally:
            raw.pgconn.untrace()
    return [
        line
        for line in trace.read_text().splitlines()
        if "\tF\t" in line and ("\tQuery\t" in line or "\tParse\t" in line)
    ]


def test_a_connection_reused_at_once_is_not_pinged_and_an_idle_one_is(
    db: Engine, tmp_path: Path
) -> None:
    engine = make_sync_engine(DIRECT_DATABASE_URL, pool_size=1, ping_after_idle_s=IDLE_S)
    try:
        at_once = queries_sent(engine, tmp_path / "at-once.trace")
        idle = queries_sent(engine, tmp_path / "idle.trace", idle_s=IDLE_S + 0.1)
    finally:
        engine.dispose()
    # At once: the statement and what wraps it (BEGIN, ROLLBACK), nothing before it.
    assert sum("SELECT 2" in line for line in at_once) == 1
    assert "SELECT 2" in next(line for line in at_once if "BEGIN" not in line), at_once
    # After idling: one more query, the ping, sent first.
    assert len(idle) == len(at_once) + 1, (idle, at_once)
    assert "SELECT 2" not in idle[0]


def kill_backend(db: Engine, pid: int) -> None:
    with db.connect() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_connection_that_died_while_idle_is_replaced_sync(db: Engine) -> None:
    engine = make_sync_engine(DIRECT_DATABASE_URL, pool_size=1, ping_after_idle_s=IDLE_S)
    try:
        with engine.connect() as conn:
            pid = conn.scalar(text("SELECT pg_backend_pid()"))
        kill_backend(db, pid)
        time.sleep(IDLE_S + 0.1)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        engine.dispose()


def test_a_connection_that_died_while_idle_is_replaced_async(db: Engine) -> None:
    async def scenario(engine: AsyncEngine) -> tuple[int, int]:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        kill_backend(db, pid)
        await asyncio.sleep(IDLE_S + 0.1)
        async with engine.connect() as conn:
            return pid, await conn.scalar(text("SELECT pg_backend_pid()"))

    engine = make_async_engine(DIRECT_DATABASE_URL, pool_size=1, ping_after_idle_s=IDLE_S)
    try:
        before, after = asyncio.run(scenario(engine))
    finally:
        asyncio.run(engine.dispose())
    assert after != before


HOLD_ROUND = """
import sys, time
from db.engine import make_sync_engine
from db.locks import exclusive_round
idle_s = float(sys.argv[2]) if len(sys.argv) > 2 else None
engine = make_sync_engine(sys.argv[1], pool_size=1, idle_in_transaction_s=idle_s)
with exclusive_round(engine, 0x7465737) as conn:
    assert conn is not None
    print("held", flush=True)
    time.sleep(3600)
"""


def round_taken_while_holder_is_stopped(db: Engine, *idle_s: str, wait_s: float) -> bool:
    """Whether this process takes a round's lock within `wait_s` while another process, which
    took it and then was stopped (SIGSTOP) mid-round, is still stopped."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_ROUND, DIRECT_DATABASE_URL, *idle_s],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            os.kill(holder.pid, signal.SIGSTOP)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                with exclusive_round(db, 0x7465737) as conn:
                    if conn is not None:
                        return True
                time.sleep(0.2)
            return False
        finally:
            holder.kill()


def test_a_process_stopped_mid_round_gives_its_lock_up_after_the_idle_limit(db: Engine) -> None:
    assert round_taken_while_holder_is_stopped(db, "1", wait_s=60)


def test_without_the_idle_limit_a_stopped_process_keeps_its_lock(db: Engine) -> None:
    assert not round_taken_while_holder_is_stopped(db, wait_s=4)
