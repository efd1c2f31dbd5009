"""The text each response run again goes on from, read from its token log in the task thread
before its prompt is made (vqueue/contract/carry.py says why and how)."""

import logging
from collections.abc import Callable

from db.attempts import ClaimedJob
from vqueue.contract.carry import Carried, carried, carries_text
from vqueue.contract.wire import LogEntry
from vqueue.logs import job_context

log = logging.getLogger(__name__)

TokenLog = Callable[[str], list[LogEntry]]


def carried_texts(rows: dict[str, ClaimedJob], token_log: TokenLog | None) -> dict[str, Carried]:
    """By job: the text its last attempt published, for the responses among `rows` that run
    again and carry their text on."""
    found: dict[str, Carried] = {}
    if token_log is None:
        return found
    for job_id, row in rows.items():
        if not row.continues or row.attempt < 2 or not carries_text(row.params):
            continue
        try:
            carry = carried(token_log(job_id), row.attempt)
        except Exception as exc:  # Redis is down: the attempt starts over
            with job_context(job_id):
                log.warning("job %s: its last text is unreadable (%s); starting over", job_id, exc)
            continue
        if carry.text:
            with job_context(job_id):
                log.info(
                    "job %s: attempt %d goes on from %d characters",
                    job_id,
                    row.attempt,
                    len(carry.text),
                )
            found[job_id] = carry
    return found
