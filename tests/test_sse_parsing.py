import orjson

from api.core.wire_json import line_safe_json
from api.jobs.stream_routes import sse
from vqueue.client.api_client import ServerEvent, parse_sse, sse_lines


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


def test_lines_end_only_at_cr_and_lf_even_across_chunks() -> None:
    body = 'data: {"text": "a\u2028b\u2029c\u0085d"}\r\n\r\nid: 1\rdata: 2\n\n'.encode()
    # Every way of cutting the body in two: a CRLF split between chunks is still one end.
    for cut in range(len(body) + 1):
        assert list(sse_lines([body[:cut], body[cut:]])) == [
            'data: {"text": "a\u2028b\u2029c\u0085d"}',
            "",
            "id: 1",
            "data: 2",
            "",
        ]


def test_an_unterminated_last_line_is_not_an_event() -> None:
    assert list(parse_sse(sse_lines([b'data: {"a": 1}\n\ndata: {"b"']))) == [
        ServerEvent("message", {"a": 1}, None)
    ]


def test_server_frames_stay_one_line_for_str_splitlines() -> None:
    text = "a\u2028b\u2029c\u0085d\x0be\x1cf"
    frame = sse("delta", {"text": text}, "1-9").decode()
    assert frame.splitlines() == frame.split("\n")[:-1]
    assert list(parse_sse(frame.splitlines())) == [ServerEvent("delta", {"text": text}, "1-9")]
    line = line_safe_json({"text": text}, newline=True).decode()
    assert line.splitlines() == [line.rstrip("\n")]
    assert orjson.loads(line) == {"text": text}
