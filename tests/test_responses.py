"""OpenAI's Responses API on the running stack, driven by the official openai client: made at
once, in the background, streamed; a cut stream taken up with `starting_after`; cancelled,
deleted, chained with `previous_response_id`, held to a JSON schema; and refused by name."""

import json
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import AUTH, http
from tests.test_auth import bearer, new_key
from vqueue.settings import Settings

LONG = {"ignore_eos": True}  # vLLM's extension: runs to max_output_tokens


def _until_ended(oai: openai.OpenAI, response_id: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = oai.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress"):
            return response
        time.sleep(0.5)
    raise AssertionError(f"{response_id} did not end in {timeout}s")


def _endless(oai: openai.OpenAI, settings: Settings) -> Any:
    """A background response that runs until it is cancelled."""
    return oai.responses.create(
        model=settings.model_name,
        input="Write an endless poem.",
        max_output_tokens=1900,
        background=True,
        extra_body=LONG,
    )


def _job(base_url: str, response_id: str) -> dict[str, Any]:
    job_id = uuid.UUID(hex=response_id.removeprefix("resp_"))
    found = http.get(f"{base_url}/jobs/{job_id}")
    assert found.status_code == 200, found.text
    return found.json()  # type: ignore[no-any-return]


def test_a_response_made_at_once_is_its_jobs_text(
    oai: openai.OpenAI, base_url: str, settings: Settings
) -> None:
    response = oai.responses.create(
        model=settings.model_name,
        input="Name three colours.",
        instructions="Answer briefly.",
        max_output_tokens=24,
        temperature=0,
        metadata={"ticket": "42"},
    )
    assert response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert response.instructions == "Answer briefly."
    assert response.metadata == {"ticket": "42"}
    assert response.usage is not None
    assert response.usage.output_tokens <= 24
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    job = _job(base_url, response.id)
    assert job["text"] == response.output_text
    assert job["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert oai.responses.retrieve(response.id).output_text == response.output_text


def test_a_background_response_is_polled_to_its_end(oai: openai.OpenAI, settings: Settings) -> None:
    response = oai.responses.create(
        model=settings.model_name,
        input="Count to ten.",
        background=True,
        max_output_tokens=32,
        extra_body=LONG,
    )
    assert response.background is True
    assert response.status in ("queued", "in_progress")
    ended = _until_ended(oai, response.id)
    assert ended.status == "incomplete"  # it ran to max_output_tokens
    assert ended.incomplete_details is not None
    assert ended.incomplete_details.reason == "max_output_tokens"
    assert ended.usage is not None
    assert ended.usage.output_tokens == 32
    assert ended.output_text


def _events(stream: Any) -> list[Any]:
    return list(stream)


def _deltas(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_a_stream_sends_openais_events_in_order(oai: openai.OpenAI, settings: Settings) -> None:
    events = _events(
        oai.responses.create(
            model=settings.model_name,
            input="Tell me about the sea.",
            max_output_tokens=40,
            stream=True,
            extra_body=LONG,
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text
    assert events[-4].text == text
    final = events[-1].response
    assert final.output_text == text
    assert final.usage.output_tokens == 40


def test_a_cut_stream_is_taken_up_after_its_last_event(
    oai: openai.OpenAI, settings: Settings
) -> None:
    response = oai.responses.create(
        model=settings.model_name,
        input="Write a long story about a lighthouse.",
        max_output_tokens=120,
        background=True,
        extra_body=LONG,
    )
    received = []
    # The client reads a few deltas, then its connection goes: the response goes on.
    with oai.responses.retrieve(response.id, stream=True) as stream:
        for event in stream:
            received.append(event)
            if sum(e.type == "response.output_text.delta" for e in received) >= 3:
                break
    last = received[-1].sequence_number
    rest = list(oai.responses.retrieve(response.id, stream=True, starting_after=last))
    assert all(event.sequence_number > last for event in rest)
    events = received + rest
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].type == "response.incomplete"
    # Every character exactly once, whatever pieces each read got.
    assert text == events[-1].response.output_text == _until_ended(oai, response.id).output_text
    # From a point inside the text: the same text from exactly there.
    middle = received[-1].sequence_number - 2
    again = list(oai.responses.retrieve(response.id, stream=True, starting_after=middle))
    tail = "".join(e.delta for e in again if e.type == "response.output_text.delta")
    assert text.endswith(tail)
    assert len(tail) == len(text) - (middle - 3)


def test_a_background_response_is_cancelled_keeping_its_text(
    oai: openai.OpenAI, settings: Settings
) -> None:
    response = _endless(oai, settings)
    deadline = time.monotonic() + 300
    while not oai.responses.retrieve(response.id).output_text:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    cancelled = oai.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    assert cancelled.output_text  # what it made before the cancel
    assert oai.responses.cancel(response.id).status == "cancelled"  # again: nothing changes
    assert oai.responses.retrieve(response.id).status == "cancelled"
    # Its stream, read after the cancel, ends with the event OpenAI's webhooks name; the SDK
    # has no type of its own for it in a stream, so its response comes as a plain object.
    events = list(oai.responses.retrieve(response.id, stream=True))
    assert events[-1].type == "response.cancelled"
    assert events[-1].response["status"] == "cancelled"
    assert _deltas(events) == cancelled.output_text


def test_cancel_is_for_background_responses_that_have_not_ended(
    oai: openai.OpenAI, settings: Settings
) -> None:
    made = oai.responses.create(model=settings.model_name, input="Hi", max_output_tokens=4)
    with pytest.raises(openai.BadRequestError, match="only a background response"):
        oai.responses.cancel(made.id)
    ended = _until_ended(
        oai,
        oai.responses.create(
            model=settings.model_name, input="Hi", max_output_tokens=4, background=True
        ).id,
    )
    with pytest.raises(openai.BadRequestError, match="already"):
        oai.responses.cancel(ended.id)


def test_a_deleted_response_is_gone_and_its_tokens_stay_counted(
    oai: openai.OpenAI, base_url: str, settings: Settings
) -> None:
    running = _endless(oai, settings)
    with pytest.raises(openai.ConflictError, match="cancel it first"):
        oai.responses.delete(running.id)
    oai.responses.cancel(running.id)
    made = oai.responses.create(model=settings.model_name, input="Hi", max_output_tokens=8)
    oai.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.delete(made.id)
    job = _job(base_url, made.id)
    assert job["text"] is None
    assert job["messages"] == []
    assert job["usage"]["completion_tokens"] == made.usage.output_tokens  # type: ignore[union-attr]


def test_a_turn_follows_the_previous_response(
    oai: openai.OpenAI, base_url: str, settings: Settings
) -> None:
    first = oai.responses.create(
        model=settings.model_name,
        input="My name is Ada.",
        instructions="Be terse.",
        max_output_tokens=16,
        temperature=0,
    )
    second = oai.responses.create(
        model=settings.model_name,
        input="What is my name?",
        instructions="Answer in one word.",
        previous_response_id=first.id,
        max_output_tokens=8,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    # The earlier turn's input and output come before this one's; its instructions do not.
    assert _job(base_url, second.id)["messages"] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]


def test_text_format_holds_the_output_to_a_json_schema(
    oai: openai.OpenAI, settings: Settings
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    response = oai.responses.create(
        model=settings.model_name,
        input="Give a city and its population as JSON.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        max_output_tokens=64,
        temperature=0,
    )
    found = json.loads(response.output_text)
    assert set(found) == {"city", "population"}
    assert isinstance(found["population"], int)
    assert response.text is not None
    assert response.text.format.type == "json_schema"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "Hi", "frobnicate": 1}, "frobnicate"),
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "Hi", "tool_choice": "required"}, "tool_choice"),
        ({"input": "Hi", "tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "Hi", "temperature": "hot"}, "temperature"),
        ({"input": "Hi", "background": True, "store": False}, "background"),
        ({"input": "Hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": "Hi", "previous_response_id": "resp_" + "0" * 32}, "previous_response_id"),
        ({"input": "Hi", "model": "no-such-model"}, "model"),
    ],
)
def test_bad_requests_are_refused_by_name(base_url: str, body: dict[str, Any], param: str) -> None:
    before = http.get(f"{base_url}/jobs", params={"limit": 1}).json()["count"]
    response = http.post(f"{base_url}/v1/responses", json=body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert http.get(f"{base_url}/jobs", params={"limit": 1}).json()["count"] == before


def test_a_response_is_its_owners_alone(base_url: str, settings: Settings) -> None:
    alice = httpx.Client(base_url=base_url, headers=bearer(new_key("resp-alice")), timeout=120)
    bob = httpx.Client(base_url=base_url, headers=bearer(new_key("resp-bob")), timeout=120)
    with alice, bob:
        made = alice.post(
            "/v1/responses", json={"input": "Hi", "max_output_tokens": 4, "background": True}
        ).json()
        for method, path in [
            ("GET", f"/v1/responses/{made['id']}"),
            ("POST", f"/v1/responses/{made['id']}/cancel"),
            ("DELETE", f"/v1/responses/{made['id']}"),
        ]:
            assert bob.request(method, path).status_code == 404
        follow = {"input": "Hi", "previous_response_id": made["id"]}
        assert bob.post("/v1/responses", json=follow).status_code == 404
        assert alice.get(f"/v1/responses/{made['id']}").status_code == 200
    assert http.get(f"{base_url}/v1/responses/resp_nonsense", headers=AUTH).status_code == 404


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_a_function_call_comes_back_as_an_item_and_its_output_goes_in_as_one(
    oai: openai.OpenAI, base_url: str, settings: Settings
) -> None:
    asked = "What is the weather in Paris?"
    response = oai.responses.create(
        model=settings.model_name,
        input=asked,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=64,
        temperature=0,
    )
    assert response.status == "completed"
    [call] = response.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    assert response.tools[0].name == "get_weather"  # type: ignore[union-attr]
    # The client ran the tool: the call and its output go back as input items.
    answer = oai.responses.create(
        model=settings.model_name,
        input=[
            {"role": "user", "content": asked},
            call.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=24,
        temperature=0,
    )
    assert answer.output_text
    assert _job(base_url, answer.id)["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.call_id, "content": "Sunny, 21 C"},
    ]


def test_a_stream_with_tools_sends_the_call_when_it_ends(
    oai: openai.OpenAI, settings: Settings
) -> None:
    events = _events(
        oai.responses.create(
            model=settings.model_name,
            input="What is the weather in Rome?",
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="required",
            max_output_tokens=64,
            temperature=0,
            stream=True,
        )
    )
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(7))
    call = events[-2].item
    assert call.type == "function_call"
    assert events[3].delta == call.arguments
    assert events[-1].response.output[0].call_id == call.call_id
    # Taken up after the item was opened: exactly the rest.
    again = list(oai.responses.retrieve(events[-1].response.id, stream=True, starting_after=2))
    assert [event.sequence_number for event in again] == [3, 4, 5, 6]


def test_input_items_list_this_responses_own_input_newest_first(
    oai: openai.OpenAI, settings: Settings
) -> None:
    first = oai.responses.create(model=settings.model_name, input="Hi", max_output_tokens=4)
    second = oai.responses.create(
        model=settings.model_name,
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "input_text", "text": "Name a fruit."}]},
        ],
        previous_response_id=first.id,
        max_output_tokens=4,
    )
    items = list(oai.responses.input_items.list(second.id))
    # Not the earlier turn's input, not the instructions: the two turns given, newest first.
    assert [(item.role, item.content[0].text) for item in items] == [  # type: ignore[union-attr]
        ("user", "Name a fruit."),
        ("system", "Answer in French."),
    ]
    page = oai.responses.input_items.list(second.id, order="asc", limit=1)
    assert [item.content[0].text for item in page.data] == ["Answer in French."]  # type: ignore[union-attr]
    assert page.has_more
    rest = oai.responses.input_items.list(second.id, order="asc", after=page.data[0].id)
    assert [item.content[0].text for item in rest.data] == ["Name a fruit."]  # type: ignore[union-attr]
    assert not rest.has_more
    with pytest.raises(openai.BadRequestError, match="after"):
        oai.responses.input_items.list(second.id, after="msg_nonsense")
