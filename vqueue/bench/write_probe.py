"""How long a round of results takes to write: in one statement, as the recorder writes it,
or split over connections written from threads at once, with the process otherwise idle or
beside threads running Python, as a worker's engine loop does while a burst ends.

The rows are jobs inserted and claimed here, given texts of TEXT_CHARS characters (256 tokens
of the benchmark's GPU output) and deleted afterwards. The ways are measured in turns, so they
meet the same spells of the machine.

    python -m vqueue.bench.write_probe [ROWS] [BUSY_THREADS...]   (246; 0 1 by default)
"""

import random
import statistics
import string
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete

from db.attempts import AttemptResult, claim_jobs, finish_jobs
from db.engine import make_sync_engine
from db.jobs import insert_jobs, job_row
from db.schema import jobs
from db.states import JobStatus
from vqueue.bench.gil_convoy import busy_threads
from vqueue.settings import get_settings

TEXT_CHARS = 1300
ROUNDS = 3
SPLITS = (1, 4)  # statements per round, each on a connection and a thread of its own


def running_jobs(db: Engine, count: int, rng: random.Random) -> list[AttemptResult]:
    """`count` new jobs claimed by the probe, and a successful result for each."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    rows = [
        job_row(
            uuid.uuid4(),
            prompt="probe",
            messages=None,
            params={},
            model=None,
            priority=0,
            timeout_s=60,
            expires_at=expires,
        )
        for _ in range(count)
    ]
    with db.begin() as conn:
        conn.execute(insert_jobs(), rows)
        claimed = conn.execute(claim_jobs([row["id"] for row in rows], "write-probe", 60)).all()
    letters = string.ascii_letters + " "
    return [
        AttemptResult(
            row.id,
            row.attempt,
            JobStatus.SUCCEEDED,
            text="".join(rng.choices(letters, k=TEXT_CHARS)),
            finish_reason="length",
            prompt_tokens=128,
            completion_tokens=256,
        )
        for row in claimed
    ]


def write_ms(db: Engine, results: list[AttemptResult], split: int) -> float:
    """Milliseconds to record `results` as `split` statements at once; checks every row."""
    autocommit = db.execution_options(isolation_level="AUTOCOMMIT")

    def write(part: list[AttemptResult]) -> int:
        with autocommit.connect() as conn:
            return len(conn.execute(finish_jobs(part)).all())

    with ThreadPoolExecutor(split) as pool:
        started = time.perf_counter()
        written = sum(pool.map(write, [results[i::split] for i in range(split)]))
        taken = (time.perf_counter() - started) * 1000
    assert written == len(results), f"{written} of {len(results)} results written"
    return taken


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 246
    busy_counts = [int(arg) for arg in sys.argv[2:]] or [0, 1]
    db = make_sync_engine(get_settings().database_url, pool_size=max(SPLITS))
    rng = random.Random(0)
    print(f"{count} results of {TEXT_CHARS} characters, {ROUNDS} rounds; median (range)")
    try:
        for busy in busy_counts:
            taken: dict[int, list[float]] = {split: [] for split in SPLITS}
            with busy_threads(busy):
                for _ in range(ROUNDS):
                    for split in SPLITS:
                        results = running_jobs(db, count, rng)
                        try:
                            taken[split].append(write_ms(db, results, split))
                        finally:
                            with db.begin() as conn:
                                ids = [result.job_id for result in results]
                                conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
            for split, times in taken.items():
                print(
                    f"beside {busy} busy threads, {split} statement(s): "
                    f"{statistics.median(times):.1f} ms ({min(times):.1f}-{max(times):.1f})"
                )
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
