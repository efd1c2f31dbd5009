import re

import pytest

from api.jobs.stream_cursor import (
    Delta,
    Ended,
    Gap,
    Restart,
    StreamCursor,
    event_id,
    parse_event_id,
)
from vqueue.contract.wire import EntryKind, LogEntry


def delta(end: int, text: str, attempt: int = 1) -> LogEntry:
    return LogEntry("job", attempt, EntryKind.DELTA, end, text)


def test_deltas_advance_the_position() -> None:
    cursor = StreamCursor(attempt=1, position=0)
    assert cursor.accept(delta(3, "abc")) == [Delta("abc", 3, 1)]
    assert cursor.accept(delta(5, "de")) == [Delta("de", 5, 1)]
    assert cursor.position == 5


def test_seen_entries_are_skipped_and_overlaps_cut() -> None:
    cursor = StreamCursor(attempt=1, position=4)
    assert cursor.accept(delta(3, "abc")) == []
    assert cursor.accept(delta(6, "def")) == [Delta("ef", 6, 1)]


def test_an_entry_past_the_position_is_a_gap() -> None:
    cursor = StreamCursor(attempt=1, position=2)
    with pytest.raises(Gap):
        cursor.accept(delta(9, "xyz"))
    assert cursor.position == 2


def test_a_new_attempt_restarts_the_text() -> None:
    cursor = StreamCursor(attempt=1, position=5)
    assert cursor.accept(delta(2, "ne", attempt=2)) == [Restart(2), Delta("ne", 2, 2)]
    assert cursor.accept(delta(9, "old", attempt=1)) == []


def test_a_first_attempt_needs_no_restart_marker() -> None:
    cursor = StreamCursor(attempt=0, position=0)
    assert cursor.accept(delta(2, "hi")) == [Delta("hi", 2, 1)]


def test_end_and_the_rest_from_postgres() -> None:
    cursor = StreamCursor(attempt=1, position=3)
    end = LogEntry("job", 1, EntryKind.END, 8, status="succeeded")
    assert cursor.accept(end) == [Ended("succeeded")]
    assert cursor.rest_of("abcdefgh") == [Delta("defgh", 8, 1)]
    assert cursor.rest_of("abcdefgh") == []


def test_an_end_passes_its_summary_on_only_to_a_reader_that_has_the_whole_text() -> None:
    end = LogEntry("job", 1, EntryKind.END, 8, status="succeeded", final='{"attempt": 1}')
    assert StreamCursor(attempt=1, position=8).accept(end) == [Ended("succeeded", '{"attempt": 1}')]
    # Behind: the rest of the text, and so the final state, comes from Postgres.
    assert StreamCursor(attempt=1, position=3).accept(end) == [Ended("succeeded")]
    # A reader of an older attempt starts this one from nothing.
    assert StreamCursor(attempt=0, position=5).accept(end) == [Restart(1), Ended("succeeded")]


def test_an_event_id_names_the_attempt_and_the_offset() -> None:
    assert Delta("abc", 3, 2).event_id == event_id(2, 3) == "2-3"
    assert parse_event_id("2-3") == (2, 3)
    # A bare offset, as earlier releases sent it: into the current attempt.
    assert parse_event_id("17") == (None, 17)
    for bad in ["", "-3", "a-3", "2-", "2-b", "1-2-3", "+4"]:
        with pytest.raises(ValueError, match=re.escape(bad) or "^$"):
            parse_event_id(bad)
