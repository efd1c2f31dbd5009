from vqueue.client import ServerEvent, parse_sse


def test_events_comments_and_ids() -> None:
    lines = [
        "retry: 1000",
        "",
        ": keep-alive",
        "",
        "id: 3",
        "event: delta",
        'data: {"text": "abc"}',
        "",
        "event: done",
        'data: {"status": "succeeded"}',
        "",
    ]
    assert list(parse_sse(lines)) == [
        ServerEvent("delta", {"text": "abc"}, "3"),
        ServerEvent("done", {"status": "succeeded"}, None),
    ]
