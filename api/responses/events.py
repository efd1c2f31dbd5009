"""A response's stream of events, as OpenAI's Responses API sends them, taken up anywhere.

Each event's `sequence_number` is fixed by the response itself, not by the connection that
carries it, so a stream resumed from any API process with `starting_after=N` sends exactly
the events after N:

    0  response.created          3  response.content_part.added
    1  response.in_progress      B + 3 + E  response.output_text.delta ending at character E
    2  response.output_item.added
    B + L + 4 ... B + L + 7  output_text.done, content_part.done, output_item.done, and the
                  end (response.completed, .incomplete, .failed or .cancelled), L the text's
                  length

Numbers rise but skip: a delta's number is where its text ends, so a resume cuts the text at
exactly the character the client had, whatever pieces the worker published it in. B is 0 for
the job's first attempt and ATTEMPT_SPAN more for each run after (its worker was lost). A new
run goes on from the last one's text (vqueue/contract/carry.py), so a stream, live or
resumed, goes on too; a response held to a grammar starts over instead, and a client resuming
with a number of the run before is told so (409) instead of being sent the rest of a
different text.

A response offered tools whose output is read for calls is sent whole when it ends (its text
may be a call): after response.in_progress, each output item's events (a message's text in
one delta, a function call's arguments in one) numbered one after another.
"""

from collections.abc import AsyncIterator, Mapping
from typing import Any

from api.core.wire_json import line_safe_json
from api.jobs.follower import Final, FollowEvent, Idle, Revoked
from api.jobs.stream_cursor import Delta, Restart
from api.responses.views import message_id, output_message, output_text, response_object
from db.states import JobStatus
from vqueue.contract.carry import carries_text
from vqueue.contract.tools import ToolUse

TEXT_BASE = 3  # the sequence number of the text's start (the content part's opening)
ATTEMPT_SPAN = 2**32  # above any text's length
KEEPALIVE = b": keep-alive\n\n"


class StaleResume(ValueError):
    """A resume from a number of an earlier run, whose text the client began."""


def holds_text(row: Mapping[str, Any]) -> bool:
    """A response whose output is read for tool calls is sent whole when it ends: its text
    may be a call, not a message. Its events are numbered one after another."""
    use = ToolUse.from_stored(row.get("tools"))
    return use is not None and use.reads_calls


def continues(row: Mapping[str, Any]) -> bool:
    """Whether a client's stream goes on across a new run of this response: the run goes on
    from the last one's text, or no text was sent before the end."""
    return carries_text(row["params"]) or holds_text(row)


def resume_point(
    starting_after: int | None, attempt: int, carried_on: bool = True
) -> tuple[int, int]:
    """(attempt, text position) where a stream resumed after `starting_after` begins, for a
    job now on `attempt`. Raises StaleResume for text of an earlier run that the current one
    did not carry on, ValueError for a number no stream of this response sent."""
    if starting_after is None or starting_after < TEXT_BASE:
        return attempt, 0
    run, position = divmod(starting_after - TEXT_BASE, ATTEMPT_SPAN)
    run += 1
    if run > max(attempt, 1):
        raise ValueError(starting_after)
    if run < attempt:
        if position > 0 and not carried_on:
            raise StaleResume(starting_after)
        return attempt, position
    return run, position


def text_number(attempt: int, offset: int) -> int:
    return (max(attempt, 1) - 1) * ATTEMPT_SPAN + TEXT_BASE + offset


def frame(kind: str, sequence_number: int, body: dict[str, Any]) -> bytes:
    data = {"type": kind, "sequence_number": sequence_number, **body}
    return b"event: " + kind.encode() + b"\ndata: " + line_safe_json(data) + b"\n\n"


def _end_kind(status: str) -> str:
    return {
        "completed": "response.completed",
        "incomplete": "response.incomplete",
        "cancelled": "response.cancelled",
    }.get(status, "response.failed")


class ResponseStream:
    def __init__(self, row: Mapping[str, Any], starting_after: int | None = None) -> None:
        """`starting_after` must have passed resume_point() for this row."""
        self.row = row
        self.after = -1 if starting_after is None else starting_after
        # The run whose text the client holds, and how many characters of it.
        self.continues = continues(row)
        self.attempt, self.sent = resume_point(starting_after, row["attempt"], self.continues)
        self.item = message_id(row["id"])
        self.started = False
        self.held = holds_text(row)

    def _due(self, number: int) -> bool:
        return number > self.after

    def _opening(self) -> list[bytes]:
        frames = []
        if self._due(0):
            frames.append(frame("response.created", 0, {"response": self._snapshot()}))
        return frames

    def _snapshot(self, status: str | None = None) -> dict[str, Any]:
        return response_object(self.row, text="", status=status)

    def _started(self) -> list[bytes]:
        """in_progress and the opening of the message, once the job runs."""
        if self.started:
            return []
        self.started = True
        frames = []
        if self._due(1):
            snapshot = self._snapshot("in_progress")
            frames.append(frame("response.in_progress", 1, {"response": snapshot}))
        if self.held:
            return frames
        if self._due(2):
            item = output_message(self.row["id"], "", "in_progress")
            frames.append(frame("response.output_item.added", 2, {"output_index": 0, "item": item}))
        if self._due(TEXT_BASE):
            part = {"item_id": self.item, "output_index": 0, "content_index": 0}
            body = {**part, "part": output_text("")}
            frames.append(frame("response.content_part.added", TEXT_BASE, body))
        return frames

    def _delta(self, event: Delta) -> list[bytes]:
        if event.attempt:  # 0: text replayed from Postgres, of the run already followed
            self.attempt = event.attempt
        begins = event.offset - len(event.text)
        # Characters the client already holds are not sent again (a resume's cut, or a new
        # attempt that carried the text on).
        text = event.text[max(0, self.sent - begins) :]
        if not text:
            return []
        self.sent = event.offset
        body = {
            "item_id": self.item,
            "output_index": 0,
            "content_index": 0,
            "delta": text,
            "logprobs": [],
        }
        number = text_number(self.attempt, event.offset)
        return [frame("response.output_text.delta", number, body)]

    def _ending(self, final: Final) -> list[bytes]:
        if final.summary.attempt > self.attempt:
            if self.sent > 0 and not self.continues:  # the client holds another run's text
                return [_restarted()]
            self.attempt = final.summary.attempt
        text = final.text or ""
        length = len(text)
        whole = response_object(self.row, summary=final.summary, text=text)
        status = whole["status"]
        frames = []
        if length or status in ("completed", "incomplete"):
            frames += self._started()
            if length > self.sent:
                # Text the log no longer held (Redis lost it): from the stored text.
                frames += self._delta(Delta(text[self.sent :], length))
            part = {"item_id": self.item, "output_index": 0, "content_index": 0}
            # No text at all: the response has no output, its stream an empty message.
            item = whole["output"][0] if length else output_message(self.row["id"], "", status)
            done = [
                ("response.output_text.done", {**part, "text": text, "logprobs": []}),
                ("response.content_part.done", {**part, "part": output_text(text)}),
                ("response.output_item.done", {"output_index": 0, "item": item}),
            ]
            for i, (kind, body) in enumerate(done, start=1):
                if self._due(number := text_number(self.attempt, length + i)):
                    frames.append(frame(kind, number, body))
        if self._due(number := text_number(self.attempt, length + 4)):
            frames.append(frame(_end_kind(status), number, {"response": whole}))
        return frames

    def _held_ending(self, final: Final) -> list[bytes]:
        """Every item of the whole response, its events numbered one after another."""
        text = final.text or ""
        whole = response_object(
            self.row, summary=final.summary, text=text, tool_calls=final.tool_calls
        )
        frames = self._started()
        number = 1

        def add(kind: str, body: dict[str, Any]) -> None:
            nonlocal number
            number += 1
            if self._due(number):
                frames.append(frame(kind, number, body))

        for index, item in enumerate(whole["output"]):
            ids = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                said = item["content"][0]["text"]
                opened = {**item, "status": "in_progress", "content": []}
                add("response.output_item.added", {"output_index": index, "item": opened})
                part = {**ids, "content_index": 0}
                add("response.content_part.added", {**part, "part": output_text("")})
                add("response.output_text.delta", {**part, "delta": said, "logprobs": []})
                add("response.output_text.done", {**part, "text": said, "logprobs": []})
                add("response.content_part.done", {**part, "part": output_text(said)})
            else:
                opened = {**item, "status": "in_progress", "arguments": ""}
                add("response.output_item.added", {"output_index": index, "item": opened})
                arguments = item["arguments"]
                add("response.function_call_arguments.delta", {**ids, "delta": arguments})
                done = {**ids, "name": item["name"], "arguments": arguments}
                add("response.function_call_arguments.done", done)
            add("response.output_item.done", {"output_index": index, "item": item})
        add(_end_kind(whole["status"]), {"response": whole})
        return frames

    async def frames(self, events: AsyncIterator[FollowEvent]) -> AsyncIterator[bytes]:
        for data in self._opening():
            yield data
        if self.row["status"] != JobStatus.QUEUED:
            for data in self._started():
                yield data
        async for event in events:
            if isinstance(event, Delta):
                for data in self._started() + ([] if self.held else self._delta(event)):
                    yield data
            elif isinstance(event, Final):
                ending = self._held_ending(event) if self.held else self._ending(event)
                for data in ending:
                    yield data
                return
            elif isinstance(event, Idle):
                if event.row is not None and event.row["status"] == JobStatus.RUNNING:
                    for data in self._started():
                        yield data
                yield KEEPALIVE
            elif isinstance(event, Revoked):
                yield _error("the API key was revoked", "authentication_error")
                return
            elif isinstance(event, Restart):
                if self.sent > 0 and not self.continues:
                    # Its worker was lost and the job runs again from the start: text already
                    # sent cannot be taken back. The client reads the new run's text anew.
                    yield _restarted()
                    return
                # Else the new run begins with the text the client holds (see _delta).
                self.attempt = event.attempt


def _error(message: str, code: str) -> bytes:
    data = {"type": "error", "code": code, "message": message, "param": None}
    return b"event: error\ndata: " + line_safe_json(data) + b"\n\n"


def _restarted() -> bytes:
    return _error(
        "the worker running this response was lost and it ran again; read it again "
        "without starting_after",
        "response_restarted",
    )
