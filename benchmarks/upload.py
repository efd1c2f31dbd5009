"""`python -m benchmarks.upload`: how fast batch uploads are accepted, and whether the API
keeps answering meanwhile. Writes benchmarks/results/upload-<label>.{json,md}.

Starts only the API (no worker, so nothing is generated), on the settings' database and port
(the Makefile's `bench-upload` target uses the benchmark's own), uploads JSONL files of
increasing size while another client asks GET /health every 20 ms, then cancels the batches.
"""

import argparse
import asyncio
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.queue_side import auth_headers
from benchmarks.report import machine
from db.migrate import reset_database
from vqueue.dev import stack
from vqueue.settings import get_settings

PROBE_INTERVAL_S = 0.02


def prompts_file(count: int, prompt_chars: int) -> bytes:
    filler = "Background: the list was compiled from several sources over many years. "
    lines = (
        {
            "custom_id": f"q-{i}",
            "prompt": (
                (filler * (prompt_chars // len(filler) + 1))[: max(0, prompt_chars - 80)]
                + f" Summarise, in two sentences, why item {i} of the list matters."
            ),
            "max_tokens": 64,
        }
        for i in range(count)
    )
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


async def probe_health(
    session: aiohttp.ClientSession, url: str, stop: asyncio.Event
) -> list[float]:
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{url}/health") as response:
            await response.read()
            assert response.status == 200
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(PROBE_INTERVAL_S)
    return latencies


async def measure(url: str, count: int, prompt_chars: int) -> dict[str, Any]:
    content = prompts_file(count, prompt_chars)
    async with aiohttp.ClientSession(headers=auth_headers()) as session:
        stop = asyncio.Event()
        probe = asyncio.create_task(probe_health(session, url, stop))
        await asyncio.sleep(0.2)
        form = aiohttp.FormData()
        form.add_field("file", content, filename="prompts.jsonl", content_type="application/jsonl")
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=600)
        async with session.post(f"{url}/batches", data=form, timeout=timeout) as response:
            body = await response.json()
            assert response.status == 202, body
        seconds = time.perf_counter() - started
        stop.set()
        latencies = await probe
        async with session.post(f"{url}/batches/{body['id']}/cancel") as response:
            await response.read()
    return {
        "prompts": count,
        "bytes": len(content),
        "seconds": round(seconds, 3),
        "prompts_per_s": round(count / seconds),
        "health_probes": len(latencies),
        "health_p50_ms": round(statistics.median(latencies), 1),
        "health_max_ms": round(max(latencies), 1),
    }


def write(out: Path, label: str, result: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"upload-{label}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    lines = [
        f"# Batch upload: {label}",
        "",
        f"{result['date']} · {result['machine']} · `{result['command']}`",
        "",
        "Multipart JSONL upload to `POST /batches` until its `202` (parsed, validated, every job",
        "row written with COPY), while another client asked `GET /health` every 20 ms.",
        "",
        "| prompts | MB | accepted in | prompts/s | /health answers | p50 | slowest |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['prompts']:,} | {r['bytes'] / 1e6:.1f} | {r['seconds']:.2f} s | "
        f"{r['prompts_per_s']:,} | {r['health_probes']} | {r['health_p50_ms']} ms | "
        f"{r['health_max_ms']} ms |"
        for r in result["runs"]
    ]
    (out / f"upload-{label}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.upload")
    parser.add_argument("--label", default="cpu")
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--prompt-chars", type=int, default=80, help="characters per prompt")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    settings = get_settings()
    reset_database(settings.database_url)
    os.environ["VQUEUE_API_KEY"] = stack.local_key(settings) or ""
    pid = stack.start_api(settings)
    try:
        url = stack.base_url(settings)
        runs = [
            asyncio.run(measure(url, int(size), args.prompt_chars))
            for size in args.sizes.split(",")
        ]
    finally:
        stack.down(settings)
    for run in runs:
        print(run, flush=True)
    result = {
        "label": args.label,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine()["description"],
        "python": platform.python_version(),
        "command": f"python -m benchmarks.upload --label {args.label} --sizes {args.sizes} "
        f"--prompt-chars {args.prompt_chars}",
        "api_pid": pid,
        "runs": runs,
    }
    write(args.out, args.label, result)


if __name__ == "__main__":
    main()
