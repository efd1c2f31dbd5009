"""OpenAI's Files API as the official client pages through it and deletes from it."""

import openai
import orjson
import pytest

from tests.durability import wait_until
from vqueue.settings import Settings


def request_line(custom_id: str, settings: Settings) -> bytes:
    body = {"model": settings.model_name, "prompt": f"Count {custom_id}:", "max_tokens": 3}
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": body}
    return orjson.dumps(line) + b"\n"


def test_files_are_listed_page_by_page_newest_first(oai: openai.OpenAI, settings: Settings) -> None:
    made = [
        oai.files.create(file=(f"f{i}.jsonl", request_line(str(i), settings)), purpose="batch")
        for i in range(3)
    ]
    newest = oai.files.list(limit=2, order="desc")
    assert [f.id for f in newest.data] == [made[2].id, made[1].id]
    assert newest.has_more
    # The client follows the cursor (`after`) on its own.
    listed = [f.id for f in oai.files.list(limit=2, order="desc")]
    assert listed[:3] == [made[2].id, made[1].id, made[0].id]
    oldest_first = [f.id for f in oai.files.list(order="asc")]
    assert oldest_first.index(made[0].id) < oldest_first.index(made[2].id)
    assert {f.purpose for f in oai.files.list(purpose="batch")} == {"batch"}
    assert not oai.files.list(purpose="fine-tune").data


def test_a_deleted_file_is_gone_and_its_batch_keeps_its_results(
    oai: openai.OpenAI, settings: Settings
) -> None:
    uploaded = oai.files.create(
        file=("in.jsonl", request_line("a", settings) + request_line("b", settings)),
        purpose="batch",
    )
    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h"
    )
    deleted = oai.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted) == (uploaded.id, True)
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        oai.files.delete(uploaded.id)
    assert uploaded.id not in [f.id for f in oai.files.list()]
    wait_until(
        lambda: oai.batches.retrieve(batch.id).status in {"completed", "failed", "cancelled"},
        timeout=300,
        interval=0.5,
    )
    done = oai.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert done.output_file_id is not None
    lines = oai.files.content(done.output_file_id).text.splitlines()
    assert sorted(orjson.loads(line)["custom_id"] for line in lines) == ["a", "b"]
    with pytest.raises(openai.BadRequestError) as refused:
        oai.files.delete(done.output_file_id)
    assert refused.value.body["param"] == "file_id"  # type: ignore[index]
