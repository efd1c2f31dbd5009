"""Prompts with NUL: stored escaped (db.stored_text.py), given back and run unchanged."""

import openai
import orjson
from hypothesis import given
from hypothesis import strategies as st

from db.stored_text import MARK, from_stored, json_from_stored, json_to_stored, to_stored
from tests.test_openai_files import request_line
from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings

# Texts made mostly of the characters the escape is about.
TRICKY = st.text(alphabet=st.sampled_from(["\x00", MARK, "0", "a", "\\", "\U0001f600"]))


@given(st.one_of(TRICKY, st.text()))
def test_every_text_comes_back_unchanged_and_stores_without_nul(text: str) -> None:
    stored = to_stored(text)
    assert "\x00" not in stored
    assert from_stored(stored) == text


JSON = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | TRICKY,
    lambda inner: st.lists(inner) | st.dictionaries(TRICKY, inner),
    max_leaves=20,
)


@given(JSON)
def test_every_json_value_comes_back_unchanged(value: object) -> None:
    stored = json_to_stored(value)
    assert b"\\u0000" not in orjson.dumps(stored)  # what Postgres JSON refuses
    assert json_from_stored(stored) == value


def test_texts_without_nul_are_stored_as_they_are() -> None:
    assert to_stored("plain \\0 text") == "plain \\0 text"
    assert to_stored("a\x00b") == MARK + "a" + MARK + "0b"
    # A text that begins with the mark is escaped too, so reading it back is unambiguous.
    assert to_stored(MARK + "0") == MARK + MARK + MARK + "0"


def test_a_prompt_with_nul_runs_and_reads_back_unchanged(client: VQueueClient) -> None:
    prompt = "Random tokens\x00 may hold NUL\x00\x00, and " + MARK + " too:"
    job = client.submit(prompt=prompt, max_tokens=4)
    done = client.wait(job["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["prompt"] == prompt
    chat = client.submit(messages=[{"role": "user", "content": MARK + "hi\x00"}], max_tokens=2)
    assert client.wait(chat["id"])["messages"][0]["content"] == MARK + "hi\x00"


def test_openai_clients_may_send_nul(oai: openai.OpenAI, settings: Settings) -> None:
    # What vLLM's benchmark sends with random-token prompts; vLLM's server takes them.
    completion = oai.completions.create(
        model=settings.model_name, prompt="a\x00b\x00c", max_tokens=3
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    chat = oai.chat.completions.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "Say \x00 hi"}],
        max_tokens=3,
    )
    assert chat.choices[0].finish_reason in {"stop", "length"}


def test_a_batch_line_with_nul_runs(client: VQueueClient) -> None:
    batch = client.upload_batch(b'{"prompt": "x\\u0000y"}\n', filename="nul.jsonl", max_tokens=2)
    assert client.wait_batch(batch["id"])["status"] == "completed"
    (result,) = client.batch_results(batch["id"])
    assert result["status"] == "succeeded"


def test_nul_in_a_batch_lines_custom_id_metadata_and_stop_is_kept(client: VQueueClient) -> None:
    line = {
        "prompt": "Say hi.",
        "custom_id": "a\x00b",
        "metadata": {"key\x00": "value\x00"},
        "stop": ["\x00"],
        "max_tokens": 2,
    }
    batch = client.upload_batch(orjson.dumps(line) + b"\n", filename="nul.jsonl")
    assert client.wait_batch(batch["id"])["status"] == "completed"
    (result,) = client.batch_results(batch["id"])
    assert (result["custom_id"], result["metadata"]) == ("a\x00b", {"key\x00": "value\x00"})
    assert client.get(result["job_id"])["params"]["stop"] == ["\x00"]


def test_nul_in_openai_batch_metadata_is_kept(oai: openai.OpenAI, settings: Settings) -> None:
    uploaded = oai.files.create(file=("in.jsonl", request_line("x\x00", settings)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/completions",
        completion_window="24h",
        metadata={"note\x00": "a\x00b"},
    )
    assert oai.batches.retrieve(batch.id).metadata == {"note\x00": "a\x00b"}
