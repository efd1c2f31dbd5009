from vqueue.contract.wire import (
    EntryKind,
    LogEntry,
    decode_events,
    encode_events,
    entry_from_stream,
)


def test_delta_round_trips_through_stream_fields() -> None:
    entry = LogEntry("job", 2, EntryKind.DELTA, end=17, text="hello")
    assert entry.stream_id == "2-17"
    assert entry.start == 12
    assert entry_from_stream("job", entry.stream_id, entry.stream_fields()) == entry


def test_end_entry_sorts_after_the_last_delta_of_its_attempt() -> None:
    last = LogEntry("job", 1, EntryKind.DELTA, end=40, text="x")
    end = LogEntry("job", 1, EntryKind.END, end=40, status="succeeded")
    assert end.stream_id == "1-41"
    assert entry_from_stream("job", end.stream_id, end.stream_fields()) == end
    assert tuple(map(int, end.stream_id.split("-"))) > tuple(map(int, last.stream_id.split("-")))


def test_events_of_many_jobs_share_one_message() -> None:
    entries = [
        LogEntry("a", 1, EntryKind.DELTA, 3, "abc"),
        LogEntry("b", 1, EntryKind.DELTA, 2, "é\n"),
        LogEntry("a", 1, EntryKind.END, 3, status="failed"),
    ]
    assert decode_events(encode_events(entries)) == entries


def test_an_end_carries_the_jobs_summary_in_the_place_of_its_text() -> None:
    summary = '{"id": "job", "status": "succeeded", "attempt": 1}'
    end = LogEntry("job", 1, EntryKind.END, end=40, status="succeeded", final=summary)
    assert end.start == 40  # an END has no text of its own
    assert end.stream_fields()["t"] == summary
    assert entry_from_stream("job", end.stream_id, end.stream_fields()) == end
    assert decode_events(encode_events([end])) == [end]


def test_an_end_from_an_earlier_writer_has_no_summary() -> None:
    fields = {"k": "end", "t": "", "s": "failed", "w": "0.0"}
    assert entry_from_stream("job", "1-9", fields) == LogEntry(
        "job", 1, EntryKind.END, 8, status="failed"
    )
