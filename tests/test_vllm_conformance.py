"""The queue's /v1 beside `vllm serve` on the same model and engine arguments: the same
requests get the same answers (greedy, so the same text), in the same shapes and with the
same status codes. The keys vLLM's server adds beyond OpenAI's are named where they differ."""

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, text

from benchmarks.vllm_serve import running_vllm_serve
from tests.conftest import free_port
from tests.helpers import TOOL_TURNS, WEATHER_TOOL, http
from vqueue.settings import Settings

pytestmark = pytest.mark.slow

# Keys vLLM's server adds to OpenAI's shapes that this service does not send.
VLLM_ONLY = {
    "choices.*.routed_experts",
    "ec_transfer_params",
    "metrics",
    "prompt_text",
    "choices.*.prompt_logprobs",
    "choices.*.prompt_token_ids",
    "choices.*.token_ids",
    "choices.*.stop_reason",
    "choices.*.message.reasoning",
    "choices.*.message.reasoning_content",
    "kv_transfer_params",
    "prompt_logprobs",
    "prompt_token_ids",
    "service_tier",
    "system_fingerprint",
}


@pytest.fixture(scope="module")
def peer(settings: Settings, base_url: str) -> Iterator[str]:
    """vLLM's server beside the suite's stack (started after it, so the two engines do not
    load at once)."""
    log = settings.run_dir / "vllm-serve.log"
    with running_vllm_serve(settings, free_port(), log) as url:
        yield url


@pytest.fixture(autouse=True)
def engine_to_itself(peer: str, db: Engine) -> None:
    """Greedy text is the same from both only if the queue's engine batches nothing else
    beside the request (kernels' sums differ with batch shape): wait for jobs left by
    earlier tests to end, or a few minutes at most, as some may wait in the queue longer."""
    busy = text("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with db.connect() as conn:
            if conn.execute(busy).scalar_one() == 0:
                return
        time.sleep(0.5)


def missing_keys(theirs: Any, ours: Any, path: str = "") -> set[str]:
    """Key paths in `theirs` that `ours` lacks (lists compared by their first items)."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        missing = set()
        for key, value in theirs.items():
            where = f"{path}.{key}" if path else key
            if key not in ours:
                missing.add(where)
            else:
                missing |= missing_keys(value, ours[key], where)
        return missing
    if isinstance(theirs, list) and isinstance(ours, list) and theirs and ours:
        return missing_keys(theirs[0], ours[0], f"{path}.*")
    return set()


def both(peer: str, base_url: str, path: str, body: dict[str, Any]) -> tuple[Any, Any]:
    theirs = httpx.post(f"{peer}{path}", json=body, timeout=120)
    ours = http.post(f"{base_url}{path}", json=body, timeout=120)
    assert theirs.status_code == ours.status_code, (theirs.text, ours.text)
    return theirs.json(), ours.json()


def streamed(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    with client.stream("POST", url, json={**body, "stream": True}, timeout=120) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [orjson.loads(line) for line in lines[:-1]]


def check_same(theirs: Any, ours: Any) -> None:
    assert missing_keys(theirs, ours) - VLLM_ONLY == set()


def test_completions_agree(peer: str, base_url: str, settings: Settings) -> None:
    body = {"model": settings.model_name, "prompt": "The capital of France is", "max_tokens": 8}
    theirs, ours = both(peer, base_url, "/v1/completions", {**body, "temperature": 0})
    check_same(theirs, ours)
    assert ours["choices"][0]["text"] == theirs["choices"][0]["text"]
    assert ours["usage"] == theirs["usage"]


def test_chat_completions_agree(peer: str, base_url: str, settings: Settings) -> None:
    body = {
        "model": settings.model_name,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 12,
        "temperature": 0,
    }
    theirs, ours = both(peer, base_url, "/v1/chat/completions", body)
    check_same(theirs, ours)
    assert ours["choices"][0]["message"] == {
        key: value
        for key, value in theirs["choices"][0]["message"].items()
        if key in ours["choices"][0]["message"]
    }
    assert ours["usage"] == theirs["usage"]


@pytest.mark.parametrize("echo", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_streams_agree(peer: str, base_url: str, settings: Settings, path: str, echo: bool) -> None:
    body: dict[str, Any] = {
        "model": settings.model_name,
        "max_tokens": 10,
        "temperature": 0,
        "stream_options": {"include_usage": True},
        "echo": echo,
    }
    if path == "/v1/completions":
        body["prompt"] = "Once upon a time"
    else:
        # An assistant's last turn: what chat's echo repeats.
        body["messages"] = [
            {"role": "user", "content": "Tell me a story."},
            {"role": "assistant", "content": "Once upon a time"},
        ]
    with httpx.Client() as plain:
        theirs = streamed(plain, f"{peer}{path}", body)
    ours = streamed(http, f"{base_url}{path}", body)

    def text(chunks: list[Any]) -> str:
        if path == "/v1/completions":
            return "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )

    assert text(ours) == text(theirs)
    check_same(theirs[0], ours[0])
    # The last chunk carries the usage alone, as both send it.
    assert ours[-1]["choices"] == theirs[-1]["choices"] == []
    assert ours[-1]["usage"] == theirs[-1]["usage"]
    assert ours[-2]["choices"][0]["finish_reason"] == theirs[-2]["choices"][0]["finish_reason"]


@pytest.mark.parametrize(
    "extra",
    [
        {"structured_outputs": {"choice": ["red", "green", "blue"]}},
        {"logit_bias": {"21285": 100}},
        {"prompt": "Random tokens\x00 with NUL\x00"},
        {"stop": ["."], "include_stop_str_in_output": True, "max_tokens": 40},
        {"echo": True},
        {"prompt": [504, 3575, 282, 4649, 314]},
        {"prompt": [504, 3575, 282, 4649, 314], "echo": True},
        {"structured_outputs": {"json": {"type": "object", "properties": {"n": {"type": "integer"}},
         "required": ["n"]}, "disable_any_whitespace": True}},
    ],
    ids=[
        "choice", "logit_bias", "nul", "stop", "echo", "token_ids", "token_ids_echo", "json_schema"
    ],
)  # fmt: skip
def test_vllm_fields_agree(
    peer: str, base_url: str, settings: Settings, extra: dict[str, Any]
) -> None:
    body = {
        "model": settings.model_name,
        "prompt": "The sky is",
        "max_tokens": 12,
        "temperature": 0,
        **extra,
    }
    theirs, ours = both(peer, base_url, "/v1/completions", body)
    assert ours["choices"][0]["text"] == theirs["choices"][0]["text"]
    assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"]


@pytest.mark.parametrize(
    "change",
    [
        {"model": "no-such-model"},
        {"max_tokens": -1},
        {"temperature": "hot"},
        {"prompt": "word " * 3000},
        {"logit_bias": {"999999999": 1}},
        {"structured_outputs": {"grammar": 'root ::= "unclosed'}},
        {"logprobs": 21},
    ],
    ids=["model", "max_tokens", "temperature", "context", "vocabulary", "grammar", "logprobs"],
)
def test_refusals_agree(
    peer: str, base_url: str, settings: Settings, change: dict[str, Any]
) -> None:
    body = {"model": settings.model_name, "prompt": "Hi", "max_tokens": 4, **change}
    # Same status (checked in both()); the error's type is OpenAI's, where vLLM's server
    # writes its exception's name.
    _, ours = both(peer, base_url, "/v1/completions", body)
    assert set(ours["error"]) == {"message", "type", "param", "code"}
    assert ours["error"]["type"] == "invalid_request_error"


def _logprobs(path: str, chunks: list[Any]) -> list[tuple[str, float, list[str]]]:
    """(token, logprob, candidates) of every output token, over a reply's chunks (or the one
    whole answer)."""
    found = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            given = choice.get("logprobs")
            if not given:
                continue
            if path == "/v1/completions":
                found += list(
                    zip(
                        given["tokens"],
                        given["token_logprobs"],
                        [sorted(top) for top in given["top_logprobs"]],
                        strict=True,
                    )
                )
            else:
                found += [
                    (t["token"], t["logprob"], sorted(c["token"] for c in t["top_logprobs"]))
                    for t in given["content"]
                ]
    return found


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_logprobs_agree(
    peer: str, base_url: str, settings: Settings, path: str, stream: bool
) -> None:
    body: dict[str, Any] = {"model": settings.model_name, "max_tokens": 40, "temperature": 0}
    if path == "/v1/completions":
        body |= {"prompt": "The three primary colours are", "logprobs": 2}
    else:
        # Constrained to end at the end-of-sequence token, whose log probability comes last.
        body |= {
            "messages": [{"role": "user", "content": "Is the sky blue?"}],
            "logprobs": True,
            "top_logprobs": 2,
            "structured_outputs": {"choice": ["yes", "no"]},
        }
    if stream:
        body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        with httpx.Client() as plain:
            theirs = streamed(plain, f"{peer}{path}", body)
        ours = streamed(http, f"{base_url}{path}", body)
        check_same(theirs[0], ours[0])
        # Every chunk with a choice counts the tokens so far, as vLLM's does.
        assert [c["usage"]["completion_tokens"] for c in ours if c["choices"]][-1] == (
            [c["usage"]["completion_tokens"] for c in theirs if c["choices"]][-1]
        )
        assert ours[-1]["usage"] == theirs[-1]["usage"]
    else:
        theirs_whole, ours_whole = both(peer, base_url, path, body)
        check_same(theirs_whole, ours_whole)
        theirs, ours = [theirs_whole], [ours_whole]
    expected, found = _logprobs(path, theirs), _logprobs(path, ours)
    assert len(found) == len(expected) > 0
    assert [(token, top) for token, _, top in found] == [(token, top) for token, _, top in expected]
    assert [logprob for _, logprob, _ in found] == pytest.approx(
        [logprob for _, logprob, _ in expected], abs=1e-3
    )


def test_tokenize_and_models_agree(peer: str, base_url: str, settings: Settings) -> None:
    prompt = {"prompt": "Hello there, world"}
    theirs, ours = both(peer, base_url, "/tokenize", prompt)
    assert ours == theirs
    chat = {"messages": [{"role": "user", "content": "Hi"}]}
    theirs, ours = both(peer, base_url, "/tokenize", chat)
    assert ours["tokens"] == theirs["tokens"]
    theirs, ours = both(peer, base_url, "/detokenize", {"tokens": ours["tokens"]})
    assert ours == theirs
    their_models = httpx.get(f"{peer}/v1/models").json()
    our_models = http.get(f"{base_url}/v1/models").json()
    check_same(their_models, our_models)


TOOL_CHOICES: dict[str, Any] = {
    "named": {"type": "function", "function": {"name": "get_weather"}},
    "required": "required",
    "auto": "auto",
    "none": "none",
}


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    # Call ids are random in vLLM's server, and the job's own here.
    calls = [{**call, "id": None} for call in message.get("tool_calls") or ()]
    return {**message, **({"tool_calls": calls} if calls else {})}


def _assembled(chunks: list[Any]) -> tuple[str, list[tuple[str, Any]], str | None]:
    """A chat stream's content, its calls as (name, arguments), and its finish reason, as a
    client adds the deltas up. The arguments are compared as JSON values: vLLM streams a
    `required` call's arguments as the model spaced them, and re-encodes them whole."""
    content, calls, reason = "", {}, None
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                name, arguments = calls.get(call["index"], ("", ""))
                function = call.get("function") or {}
                calls[call["index"]] = (
                    name + (function.get("name") or ""),
                    arguments + (function.get("arguments") or ""),
                )
            reason = choice.get("finish_reason") or reason
    named = [calls[index] for index in sorted(calls)]
    return content, [(name, orjson.loads(arguments)) for name, arguments in named], reason


@pytest.mark.parametrize("choice", list(TOOL_CHOICES))
def test_tool_calls_agree(peer: str, base_url: str, settings: Settings, choice: str) -> None:
    body = {
        "model": settings.model_name,
        "messages": TOOL_TURNS,
        "tools": [WEATHER_TOOL],
        "tool_choice": TOOL_CHOICES[choice],
        "max_tokens": 48,
        "temperature": 0,
        # One call, so `required` ends within max_tokens: a stream cut short shows vLLM's
        # partly-read calls, where the queue reads calls from the whole text.
        "parallel_tool_calls": choice != "required",
    }
    theirs, ours = both(peer, base_url, "/v1/chat/completions", body)
    check_same(theirs, ours)
    mine, peers = ours["choices"][0], theirs["choices"][0]
    assert mine["finish_reason"] == peers["finish_reason"]
    assert _without_ids(mine["message"]) == {
        key: value
        for key, value in _without_ids(peers["message"]).items()
        if key in mine["message"]
    }
    if choice in ("named", "auto"):
        # The example works: a call of the tool, for the city asked about.
        assert mine["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert orjson.loads(mine["message"]["tool_calls"][0]["function"]["arguments"]) == {
            "city": "Rome"
        }
    url = "/v1/chat/completions"
    with httpx.Client() as client:
        their_stream = streamed(client, f"{peer}{url}", body)
    our_stream = streamed(http, f"{base_url}{url}", body)
    assert _assembled(our_stream) == _assembled(their_stream)


@pytest.mark.parametrize(
    "change",
    [
        {"tool_choice": "required"},
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
        {"tools": [WEATHER_TOOL], "tool_choice": "sometimes"},
        {"tools": [{"type": "function"}]},
    ],
    ids=["no-tools", "unknown-function", "unknown-choice", "no-function"],
)
def test_tool_refusals_agree(
    peer: str, base_url: str, settings: Settings, change: dict[str, Any]
) -> None:
    body = {"model": settings.model_name, "messages": TOOL_TURNS, "max_tokens": 4, **change}
    _, ours = both(peer, base_url, "/v1/chat/completions", body)
    assert ours["error"]["type"] == "invalid_request_error"
