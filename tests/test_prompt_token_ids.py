"""A prompt given as token ids, on POST /jobs, /v1/completions and in a batch line (real stack):
handed to the engine as they are, counted exactly, refused when the model cannot take them."""

import openai
import pytest
from transformers import AutoTokenizer

from vqueue.client.api_client import VQueueClient
from vqueue.models.default_model import prepared_path
from vqueue.settings import Settings


@pytest.fixture(scope="module")
def ids(settings: Settings) -> list[int]:
    tokenizer = AutoTokenizer.from_pretrained(prepared_path(settings.model_cache_dir))
    encoded: list[int] = tokenizer.encode("The capital of France is")
    return encoded


def test_a_job_of_token_ids_runs_and_counts_them(client: VQueueClient, ids: list[int]) -> None:
    done = client.wait(client.submit(prompt_token_ids=ids, max_tokens=4)["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["prompt_token_ids"] == ids
    assert done["prompt"] is None
    assert done["usage"]["prompt_tokens"] == len(ids)
    assert done["text"]


def test_openai_completions_take_token_ids_and_echo_them_as_text(
    oai: openai.OpenAI, settings: Settings, ids: list[int]
) -> None:
    completion = oai.completions.create(
        model=settings.model_name, prompt=ids, max_tokens=3, echo=True
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(ids)
    assert completion.choices[0].text.startswith("The capital of France is")


def test_ids_the_model_cannot_take_are_refused(
    oai: openai.OpenAI, client: VQueueClient, settings: Settings
) -> None:
    with pytest.raises(openai.BadRequestError) as outside:
        oai.completions.create(model=settings.model_name, prompt=[1, 10**6], max_tokens=2)
    assert "vocabulary" in outside.value.message
    too_long = client.http.post("/jobs", json={"prompt_token_ids": [1] * 2100, "max_tokens": 2})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["details"][0]["field"] == "prompt_token_ids"
    negative = client.http.post("/jobs", json={"prompt_token_ids": [-1], "max_tokens": 2})
    assert negative.status_code == 422
    both = client.http.post("/jobs", json={"prompt": "a", "prompt_token_ids": [1]})
    assert both.status_code == 422


def test_a_batch_line_of_token_ids(client: VQueueClient, ids: list[int]) -> None:
    line = b'{"prompt_token_ids": %s, "max_tokens": 2}\n' % str(ids).encode()
    batch = client.upload_batch(line, filename="ids.jsonl")
    assert client.wait_batch(batch["id"])["status"] == "completed"
    (result,) = client.batch_results(batch["id"])
    assert result["status"] == "succeeded"
    assert result["usage"]["prompt_tokens"] == len(ids)
