"""Clients nobody here wrote, configured as their users configure them for an OpenAI-compatible
server, against the running stack: LangChain's ChatOpenAI and Simon Willison's `llm`."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import yaml
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from vqueue.settings import Settings


class Verdict(BaseModel):
    answer: Literal["yes", "no"]


def chat_model(base_url: str, settings: Settings, **options: object) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{base_url}/v1",
        api_key=os.environ["VQUEUE_API_KEY"],  # type: ignore[arg-type]
        model=settings.model_name,
        temperature=0,
        max_retries=0,
        **options,  # type: ignore[arg-type]
    )


def test_langchain_invokes_streams_and_batches(base_url: str, settings: Settings) -> None:
    model = chat_model(base_url, settings, max_tokens=12, stream_usage=True)
    reply = model.invoke("Say hello.")
    assert isinstance(reply.content, str)
    assert reply.content
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] > 0
    chunks = list(model.stream("Say hello."))
    assert "".join(str(chunk.content) for chunk in chunks)
    # The usage chunk at the end (stream_options.include_usage), as LangChain asks for it.
    usage = [chunk.usage_metadata for chunk in chunks if chunk.usage_metadata]
    assert usage
    assert usage[-1]["output_tokens"] > 0
    replies = model.batch(["One.", "Two.", "Three."])
    assert all(isinstance(r.content, str) and r.content for r in replies)


def test_langchain_structured_output(base_url: str, settings: Settings) -> None:
    model = chat_model(base_url, settings, max_tokens=32)
    judge = model.with_structured_output(Verdict, method="json_schema")
    verdict = judge.invoke("Is water wet? Answer yes or no in JSON.")
    assert isinstance(verdict, Verdict)


def test_the_llm_cli_with_an_openai_compatible_model(
    base_url: str, settings: Settings, tmp_path: Path
) -> None:
    # As llm's documentation configures an OpenAI-compatible server: a model in
    # extra-openai-models.yaml and its key in keys.json, under LLM_USER_PATH.
    (tmp_path / "extra-openai-models.yaml").write_text(
        yaml.safe_dump(
            [
                {
                    "model_id": "vqueue",
                    "model_name": settings.model_name,
                    "api_base": f"{base_url}/v1",
                    "api_key_name": "vqueue",
                }
            ]
        )
    )
    (tmp_path / "keys.json").write_text(f'{{"vqueue": "{os.environ["VQUEUE_API_KEY"]}"}}')
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
    command = [sys.executable, "-m", "llm", "-m", "vqueue", "-o", "max_tokens", "8"]
    for stream in ([], ["--no-stream"]):
        done = subprocess.run(
            [*command, *stream, "Say hello."],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()
