"""A batch released in prefix order beside the same batch in its file's order:
`python -m benchmarks.prefix_order --label L`.

One batch file of chat lines, `--shared` of them (default 90%) opening with the same system
prompt of about `--prefix-words` words (a few-shot block, say; or with one of `--groups`
such prompts), the others each with a system prompt of their own of the same length,
shuffled. It is uploaded with `release_order=input`
and with `release_order=prefix` in turn (`--pairs` times each, so a drifting machine meets
both alike), each timed by the server from the upload to the batch's end. The engine's
prefix-cache hits over each run come from the worker's heartbeat (VQUEUE_ENGINE_STATS is
turned on for the run). Writes OUT/prefix-order-LABEL.json and .md.
"""

import argparse
import os
import random
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from benchmarks.sides import clean_slate, report_head, running_stack, write_report
from vqueue.client.api_client import VQueueClient
from vqueue.settings import get_settings

# Common words: a prefix of them tokenizes to about one token a word on the usual tokenizers.
COMMON_WORDS = (
    "the of and to in is was for on that with as by at from his her they have this had not "
    "are but which one you were all she there would their we him been has when who will more "
    "no if out so said what up its about into than them can only other new some could time "
    "these two may then do first any my now such like our over man me even most made after "
    "also did many before must through back years where much your way well down should because "
    "each just those people how too little state good very make world still own see men work "
    "long get here between both life being under never day same another know while last might"
)
WORDS = COMMON_WORDS.split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--shared", type=float, default=0.9, help="share of lines that share")
    parser.add_argument(
        "--groups", type=int, default=1, help="system prompts the sharing lines are spread over"
    )
    parser.add_argument("--prefix-words", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def batch_file(args: argparse.Namespace, seed: int) -> bytes:
    """The file of one run: the same shape every run, its words new (what an earlier run left
    in the prefix cache is no help)."""
    rng = random.Random(seed)

    def prefix() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(args.prefix_words))

    shared = [prefix() for _ in range(args.groups)]
    lines = []
    for index in range(args.lines):
        system = shared[index % args.groups] if index < args.shared * args.lines else prefix()
        question = f"Question {index}: " + " ".join(rng.choice(WORDS) for _ in range(12))
        lines.append(
            {
                "custom_id": f"q{index}",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ],
                "max_tokens": args.max_tokens,
                "ignore_eos": True,
            }
        )
    rng.shuffle(lines)
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def prefix_cache(client: VQueueClient) -> tuple[int, int]:
    """(prompt tokens looked up, of them found) in the engines' prefix caches, since start."""
    workers = client.http.get("/stats").json()["workers"]
    engines = [worker.get("engine") or {} for worker in workers]
    return (
        sum(engine.get("prefix_cache_queries", 0) for engine in engines),
        sum(engine.get("prefix_cache_hits", 0) for engine in engines),
    )


def run(client: VQueueClient, content: bytes, order: str) -> dict[str, Any]:
    queries, hits = prefix_cache(client)
    batch = client.upload_batch(content, filename="prefixes.jsonl", release_order=order)
    done = client.wait_batch(batch["id"], timeout=7200)
    assert done["status"] == "completed", done
    assert done["counts"]["succeeded"] == done["counts"]["total"], done["counts"]
    seconds = (
        datetime.fromisoformat(done["finished_at"]) - datetime.fromisoformat(done["created_at"])
    ).total_seconds()
    time.sleep(2)  # the worker's next heartbeat carries the last steps' cache figures
    queries_after, hits_after = prefix_cache(client)
    looked_up = queries_after - queries
    return {
        "release_order": order,
        "seconds": round(seconds, 2),
        "output_tokens": done["completion_tokens"],
        "output_tokens_per_s": round(done["completion_tokens"] / seconds, 1),
        "prefix_cache_hit_rate": round((hits_after - hits) / looked_up, 4) if looked_up else None,
    }


def median_of(runs: list[dict[str, Any]], order: str, key: str) -> Any:
    values = [r[key] for r in runs if r["release_order"] == order and r[key] is not None]
    return statistics.median(values) if values else None


def table(results: dict[str, Any]) -> str:
    rows = [
        "| release order | seconds (median) | output tok/s | prefix-cache hit rate |",
        "| --- | --- | --- | --- |",
    ]
    for order in ("input", "prefix"):
        rows.append(
            f"| {order} | {median_of(results['runs'], order, 'seconds')} | "
            f"{median_of(results['runs'], order, 'output_tokens_per_s')} | "
            f"{median_of(results['runs'], order, 'prefix_cache_hit_rate')} |"
        )
    ratio = results["prefix_over_input"]
    return "\n".join(rows) + f"\n\nprefix order / input order, output tok/s: {ratio}\n"


def main() -> None:
    args = parse_args()
    os.environ["VQUEUE_ENGINE_STATS"] = "true"
    settings = get_settings()
    results = report_head(args)
    key = clean_slate(settings)
    runs: list[dict[str, Any]] = []
    with (
        running_stack(settings) as base_url,
        VQueueClient(base_url, timeout=120, api_key=key or None) as client,
    ):
        # A warm-up in neither order's favour: a small file of other prompts.
        warm = orjson.dumps({"prompt": "Warm up.", "max_tokens": 8}) + b"\n"
        client.wait_batch(client.upload_batch(warm * 64, filename="warm.jsonl")["id"])
        for pair in range(args.pairs):
            for turn, order in enumerate(("input", "prefix")):
                content = batch_file(args, args.seed + 2 * pair + turn)
                runs.append(run(client, content, order))
                print(runs[-1], flush=True)
    results["runs"] = runs
    by_input = median_of(runs, "input", "output_tokens_per_s")
    by_prefix = median_of(runs, "prefix", "output_tokens_per_s")
    results["prefix_over_input"] = round(by_prefix / by_input, 3) if by_input else None
    write_report(args, "prefix-order", results, table(results))


if __name__ == "__main__":
    main()
