"""A response's text carried over when it runs again: a new attempt goes on from where the
lost one stopped instead of starting over.

A job's attempts each write their own text to its token log. When a worker is lost, the job
runs again; for a response of the Responses API (api/responses/) the next worker reads the
text the last attempt published, publishes it again as its first delta, and has the engine
go on from it (the prompt followed by that text). A client that read part of it reads on: the
new attempt's text begins with everything any reader was sent. A response held to a grammar
(structured outputs) starts over instead: the grammar cannot take up a text half written.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vqueue.contract.wire import EntryKind, LogEntry


def carries_text(params: Mapping[str, Any]) -> bool:
    """Whether a response job with these sampling parameters goes on from its last text."""
    return params.get("structured_outputs") is None


@dataclass(frozen=True, slots=True)
class Carried:
    text: str
    tokens: int  # the output tokens that made it
    prompt_tokens: int  # the job's own prompt, without the text


NOTHING = Carried("", 0, 0)


def carried(entries: Iterable[LogEntry], before_attempt: int) -> Carried:
    """The text of the latest attempt before `before_attempt` that published any, as far as
    it joins up from its start."""
    by_attempt: dict[int, list[LogEntry]] = {}
    for entry in entries:
        if entry.kind is EntryKind.DELTA and entry.attempt < before_attempt:
            by_attempt.setdefault(entry.attempt, []).append(entry)
    if not by_attempt:
        return NOTHING
    parts, position, last = [], 0, None
    for entry in sorted(by_attempt[max(by_attempt)], key=lambda e: e.end):
        if entry.start != position:
            break  # a gap: what follows it cannot be joined
        parts.append(entry.text)
        position, last = entry.end, entry
    if last is None:
        return NOTHING
    return Carried("".join(parts), last.tokens, last.prompt_tokens)
