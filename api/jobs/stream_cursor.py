"""Where one SSE reader stands in a job's output, so that every character is sent exactly once.

The reader's position is a character offset into the current attempt's text (the SSE `id`).
Entries already covered are skipped, a partly covered one is cut, and an entry that starts past
the position means something was missed: the caller re-reads the log, or, when the log cannot
fill the gap (Redis lost it), takes the rest from Postgres once the job has ended.
"""

import re
from dataclasses import dataclass

from vqueue.contract import logprobs
from vqueue.contract.wire import EntryKind, LogEntry


@dataclass(frozen=True, slots=True)
class Delta:
    text: str
    offset: int  # the position after this delta in its attempt's text
    attempt: int = 0
    at: float = 0.0  # when the worker produced it (unix time); 0 when replayed from Postgres
    # The job's token counts once it was made (LogEntry); 0 when replayed from Postgres.
    prompt_tokens: int = 0
    tokens: int = 0
    # Its tokens' log probabilities, where the job asked for them (logprobs.encode()).
    logprobs: str = ""

    @property
    def event_id(self) -> str:
        """The SSE id: attempt and offset, so a resume never joins two attempts' texts."""
        return event_id(self.attempt, self.offset)


EVENT_ID = re.compile(r"(?:([0-9]{1,9})-)?([0-9]{1,12})")


def event_id(attempt: int, offset: int) -> str:
    return f"{attempt}-{offset}"


def parse_event_id(value: str) -> tuple[int | None, int]:
    """(attempt, offset) of an SSE id: "<attempt>-<offset>", or a bare offset (into the job's
    current attempt) as earlier releases sent it. Raises ValueError for anything else."""
    found = EVENT_ID.fullmatch(value)
    if found is None:
        raise ValueError(value)
    attempt, offset = found.groups()
    return (None if attempt is None else int(attempt)), int(offset)


@dataclass(frozen=True, slots=True)
class Restart:
    attempt: int


@dataclass(frozen=True, slots=True)
class Ended:
    status: str
    # The attempt's summary as Postgres recorded it (LogEntry.final), when the END carried one
    # and this reader has had the attempt's whole text: the stream can end without a read.
    final: str = ""
    # The log probabilities of tokens after the last delta (an end-of-sequence token has
    # no text), for that reader.
    logprobs: str = ""


CursorEvent = Delta | Restart | Ended


class Gap(Exception):
    """An entry starts past the reader's position: entries in between were not seen."""


class StreamCursor:
    def __init__(self, attempt: int, position: int) -> None:
        self.attempt = attempt
        self.position = position

    def accept(self, entry: LogEntry) -> list[CursorEvent]:
        if entry.attempt < self.attempt:
            return []
        events: list[CursorEvent] = []
        if entry.attempt > self.attempt:
            # A new attempt rewrites the text from its start; readers who saw text must know.
            if self.position > 0:
                events.append(Restart(entry.attempt))
            self.attempt, self.position = entry.attempt, 0
        if entry.kind is EntryKind.END:
            # Whatever text this reader lacks then comes from Postgres (see rest_of).
            complete = entry.end == self.position
            if complete:
                events.append(Ended(entry.status, entry.final, entry.logprobs))
            else:
                events.append(Ended(entry.status))
            return events
        if entry.end <= self.position:
            return events
        if entry.start > self.position:
            raise Gap
        cut = self.position - entry.start
        token_logprobs = entry.logprobs
        if cut and token_logprobs:
            token_logprobs = logprobs.after(token_logprobs, self.position)
        delta = Delta(
            entry.text[cut:],
            entry.end,
            self.attempt,
            entry.at,
            entry.prompt_tokens,
            entry.tokens,
            token_logprobs,
        )
        self.position = entry.end
        events.append(delta)
        return events

    def rest_of(self, text: str, token_logprobs: str | None = None) -> list[CursorEvent]:
        """The part of a job's full text that this reader has not had yet, with the log
        probabilities of its tokens (from the row's, where the job has them)."""
        if len(text) <= self.position:
            return []
        rest = ""
        if token_logprobs:
            rest = logprobs.after(token_logprobs, self.position)
        delta = Delta(text[self.position :], len(text), self.attempt, logprobs=rest)
        self.position = len(text)
        return [delta]
