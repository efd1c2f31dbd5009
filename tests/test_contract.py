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


def test_a_delta_carries_its_token_counts_and_log_probabilities() -> None:
    token_logprobs = '[[0,[["Hello",-0.1],["Hi",-2.5]]]]'
    delta = LogEntry(
        "job", 1, EntryKind.DELTA, 5, "Hello", prompt_tokens=7, tokens=1, logprobs=token_logprobs
    )
    assert entry_from_stream("job", delta.stream_id, delta.stream_fields()) == delta
    assert decode_events(encode_events([delta])) == [delta]
    # And an END, those of the tokens after the last delta (an end-of-sequence token).
    end = LogEntry("job", 1, EntryKind.END, 5, status="succeeded", logprobs='[[5,[["",-0.2]]]]')
    assert decode_events(encode_events([end])) == [end]


def test_entries_of_an_earlier_writer_are_read_without_the_newer_fields() -> None:
    earlier = b'[["job",1,"delta",5,"Hello","",1.5]]'
    assert decode_events(earlier) == [LogEntry("job", 1, EntryKind.DELTA, 5, "Hello", at=1.5)]
    fields = {"k": "delta", "t": "Hello", "s": "", "w": "1.5"}
    assert entry_from_stream("job", "1-5", fields) == LogEntry(
        "job", 1, EntryKind.DELTA, 5, "Hello", at=1.5
    )
