"""Reading batch files: every format, defaults, and bad lines named by their line number."""

import io

import pytest

from api.batches.parse import (
    BatchFormat,
    NoPromptColumnError,
    ParsedBatch,
    TooManyJobsError,
    detect_format,
    parse_batch,
    sniff_openai,
)

MODEL = "served-model"


def parse(
    data: str | bytes, fmt: BatchFormat, defaults: dict[str, object] | None = None, **limits: int
) -> ParsedBatch:
    raw = data.encode() if isinstance(data, str) else data
    return parse_batch(
        io.BytesIO(raw),
        fmt,
        defaults or {},
        served_models={MODEL},
        max_jobs=limits.get("max_jobs", 100),
        max_line_bytes=limits.get("max_line_bytes", 10_000),
    )


def errors(parsed: ParsedBatch) -> dict[int, str]:
    return {error.line: error.message for error in parsed.errors}


def test_format_comes_from_the_request_then_the_name_then_the_content_type() -> None:
    assert detect_format(BatchFormat.CSV, "text/plain", "a.jsonl") is BatchFormat.CSV
    assert detect_format(None, "text/plain", "prompts.JSONL") is BatchFormat.JSONL
    assert detect_format(None, "text/csv; charset=utf-8", None) is BatchFormat.CSV
    assert detect_format(None, "application/x-ndjson", "upload") is BatchFormat.JSONL
    assert detect_format(None, "application/octet-stream", "data.bin") is None
    openai = io.BytesIO(
        b'\n{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {}}\n'
    )
    assert sniff_openai(openai)
    assert openai.tell() == 0
    assert not sniff_openai(io.BytesIO(b'{"prompt": "hi"}\n'))


def test_jsonl_lines_override_the_batch_defaults() -> None:
    parsed = parse(
        '{"prompt": "a", "custom_id": "x", "temperature": 0.1}\n'
        "\n"
        '{"messages": [{"role": "user", "content": "b"}], "metadata": {"k": 1}}\n',
        BatchFormat.JSONL,
        {"temperature": 0.7, "max_tokens": 9},
    )
    assert not parsed.errors
    first, second = (item.job for item in parsed.jobs)
    assert (first.custom_id, first.temperature, first.max_tokens) == ("x", 0.1, 9)
    # No custom_id: the line number stands in for it.
    assert (second.custom_id, second.temperature, second.metadata) == ("3", 0.7, {"k": 1})
    assert [item.line for item in parsed.jobs] == [1, 3]


def test_bad_jsonl_lines_are_named_by_number() -> None:
    parsed = parse(
        b'{"prompt": "ok"}\n'
        b"not json\n"
        b'["a list"]\n'
        b'{"prompt": ""}\n'
        b'{"prompt": "x", "temprature": 1}\n'
        b'{"prompt": "x", "max_tokens": 0}\n'
        b'{"prompt": "dup", "custom_id": "1"}\n'
        b'{"prompt": "x", "metadata": {"nested": {"a": 1}}}\n' + b'{"prompt": "\xff"}\n',
        BatchFormat.JSONL,
    )
    found = errors(parsed)
    assert sorted(found) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert "not valid JSON" in found[2]
    assert "JSON object" in found[3]
    assert found[4].startswith("prompt:")
    assert "temprature" in found[5]
    assert found[6].startswith("max_tokens:")
    assert "already used on line 1" in found[7]
    assert "metadata" in found[8]
    assert "UTF-8" in found[9]
    assert parsed.bad_lines == 8
    assert len(parsed.jobs) == 1


def test_openai_batch_lines_map_to_jobs() -> None:
    chat = (
        '{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": '
        '{"model": "served-model", "messages": [{"role": "developer", "content": "Be brief."}, '
        '{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], '
        '"max_completion_tokens": 5, "stop": "\\n", "temperature": 0}}\n'
    )
    text = (
        '{"custom_id": "t", "method": "POST", "url": "/v1/completions", '
        '"body": {"prompt": "Once", "max_tokens": 3, "seed": 1}}\n'
    )
    parsed = parse(chat + text, BatchFormat.OPENAI)
    assert not parsed.errors
    first, second = (item.job for item in parsed.jobs)
    assert first.messages is not None
    assert [(m.role, m.content) for m in first.messages] == [
        ("system", "Be brief."),
        ("user", "Hi"),
    ]
    assert (first.max_tokens, first.stop, first.temperature) == (5, ["\n"], 0.0)
    assert (second.prompt, second.max_tokens, second.seed, second.custom_id) == ("Once", 3, 1, "t")


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('{"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": {}}', "method"),
        ('{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}', "url"),
        ('{"method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}}', "custom_id"),
        (
            '{"custom_id": "a", "method": "POST", "url": "/v1/completions", '
            '"body": {"prompt": "x", "n": 2}}',
            "body.n",
        ),
        (
            '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            '"body": {"messages": [{"role": "user", "content": "x"}], '
            '"tools": [{"type": "function"}]}}',
            "body.tools",
        ),
        (
            '{"custom_id": "a", "method": "POST", "url": "/v1/completions", '
            '"body": {"prompt": "x", "model": "gpt-4"}}',
            "body.model",
        ),
        (
            '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            '"body": {"messages": [{"role": "robot", "content": "x"}]}}',
            "body.messages[0].role",
        ),
        (
            '{"custom_id": "a", "method": "POST", "url": "/v1/completions", '
            '"body": {"prompt": "x", "temperature": 3}}',
            "body.temperature",
        ),
    ],
)
def test_bad_openai_lines_name_the_parameter(line: str, named: str) -> None:
    parsed = parse(line + "\n", BatchFormat.OPENAI)
    assert not parsed.jobs
    assert named in errors(parsed)[1]


def test_csv_keeps_other_columns_as_metadata_and_counts_physical_lines() -> None:
    parsed = parse(
        'prompt,custom_id,topic\nfirst,a,x\n"two\nlines",b,y\n,c,z\nlast,d\n',
        BatchFormat.CSV,
    )
    assert [(i.line, i.job.prompt, i.job.custom_id, i.job.metadata) for i in parsed.jobs] == [
        (2, "first", "a", {"topic": "x"}),
        (3, "two\nlines", "b", {"topic": "y"}),
    ]
    found = errors(parsed)
    assert found[5].startswith("prompt:")
    assert "2 columns" in found[6]


def test_csv_needs_a_prompt_column() -> None:
    with pytest.raises(NoPromptColumnError, match="'prompt' column; its columns are text, id"):
        parse("text,id\nhello,1\n", BatchFormat.CSV)
    with pytest.raises(NoPromptColumnError):
        parse("", BatchFormat.CSV)


def test_text_is_one_prompt_per_line_and_skips_blank_lines() -> None:
    parsed = parse("first\r\n\n  \nsecond line\n", BatchFormat.TEXT, {"max_tokens": 4})
    assert [(i.line, i.job.prompt, i.job.custom_id, i.job.max_tokens) for i in parsed.jobs] == [
        (1, "first", "1", 4),
        (4, "second line", "4", 4),
    ]


def test_limits_on_lines_and_line_length() -> None:
    with pytest.raises(TooManyJobsError):
        parse("a\nb\nc\n", BatchFormat.TEXT, max_jobs=2)
    parsed = parse("short\n" + "x" * 200 + "\n", BatchFormat.TEXT, max_line_bytes=100)
    assert "over the limit of 100" in errors(parsed)[2]
    assert len(parsed.jobs) == 1
