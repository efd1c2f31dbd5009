"""vLLM's /tokenize and /detokenize on the real stack: the counts are the engine's own."""

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from tests.helpers import http
from vqueue.models.default_model import prepared_path
from vqueue.settings import Settings

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a prime number. <|im_end|>"},
]


def test_a_prompt_is_tokenized_as_the_engine_counts_it(
    base_url: str, oai: openai.OpenAI, settings: Settings
) -> None:
    prompt = "The capital of France is"
    answer = http.post(f"{base_url}/tokenize", json={"prompt": prompt, "return_token_strs": True})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    tokenizer = AutoTokenizer.from_pretrained(prepared_path(settings.model_cache_dir))
    assert got["tokens"] == tokenizer.encode(prompt)
    assert got["count"] == len(got["tokens"])
    assert got["token_strs"] == tokenizer.convert_ids_to_tokens(got["tokens"])
    assert got["max_model_len"] == settings.max_model_len
    completion = oai.completions.create(model=settings.model_name, prompt=prompt, max_tokens=1)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == got["count"]

    back = http.post(f"{base_url}/detokenize", json={"tokens": got["tokens"]})
    assert back.json() == {"prompt": prompt}


def test_chat_messages_count_as_the_engine_counts_them(
    base_url: str, oai: openai.OpenAI, settings: Settings
) -> None:
    # The control token in the content is neutralised as the worker neutralises it.
    got = http.post(f"{base_url}/tokenize", json={"messages": MESSAGES}).json()
    chat = oai.chat.completions.create(
        model=settings.model_name,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=1,
    )
    assert chat.usage is not None
    assert chat.usage.prompt_tokens == got["count"]
    assert got["token_strs"] is None


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {"prompt": "a", "messages": MESSAGES}, None),
        ("/tokenize", {}, None),
        ("/tokenize", {"prompt": "a", "frobnicate": 1}, "frobnicate"),
        ("/tokenize", {"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ("/detokenize", {"tokens": [1, 10**9]}, "tokens"),
        ("/detokenize", {"tokens": [-1]}, "tokens"),
        ("/detokenize", {"tokens": ["1"]}, "tokens.0"),
    ],
)
def test_bad_requests_are_400s_naming_the_parameter(
    base_url: str, path: str, body: dict[str, object], param: str | None
) -> None:
    answer = http.post(f"{base_url}{path}", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_an_unknown_model_is_a_404(base_url: str) -> None:
    answer = http.post(f"{base_url}/tokenize", json={"prompt": "a", "model": "gpt-4"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"


def test_a_key_is_needed(base_url: str) -> None:
    answer = httpx.post(f"{base_url}/tokenize", json={"prompt": "a"})
    assert answer.status_code == 401
