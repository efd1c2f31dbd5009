"""Where a lone request's first token goes: `python -m benchmarks.first_token --label LABEL`.

Streamed chat completions, one at a time (c=1), against the stack's `/v1`; for each, the
instants its own records give, all on one host's clock:

- `api`: the request sent -> the transaction that inserts its job began (Postgres's
  `created_at`): HTTP, the key, validation, the context check, the submitter's turn;
- `to_worker`: -> the worker's task thread sends the claim (the `claim` phase event): the
  commit, the enqueue, the broker's delivery and Celery's hand-over to a task thread;
- `claim`, `prepare`, `hand_off`: the worker's phases (vqueue/contract/phases.py);
- `engine`: -> the first token (the job's `first_token_at`): the engine's own time to a
  first token, the part `vllm serve` pays too;
- `out`: -> the client has the first text chunk: the token log, pub/sub and the SSE frame.

Everything but `engine` is the queue's own cost. Writes OUT/first-token-LABEL.json and .md.
"""

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks.sides import clean_slate, report_head, running_stack, write_report
from vqueue.dev import stack
from vqueue.settings import Settings, get_settings

PARTS = ("api", "to_worker", "claim", "prepare", "hand_off", "engine", "out", "total")
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--warm-up", type=int, default=5)
    parser.add_argument("--words", type=int, default=100, help="of the prompt (~1.3 tokens each)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    return parser.parse_args()


def send(settings: Settings, key: str, count: int, words: int) -> list[tuple[str, float, float]]:
    """(job id, sent, first text received) of `count` streamed requests, one at a time."""
    url = stack.base_url(settings) + "/v1/chat/completions"
    sent: list[tuple[str, float, float]] = []
    with httpx.Client(timeout=120, headers={"authorization": f"Bearer {key}"}) as client:
        for index in range(count):
            content = " ".join(WORDS[(index + j) % len(WORDS)] for j in range(words))
            body = {
                "model": settings.model_name,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": 4,
                "ignore_eos": True,
                "stream": True,
            }
            began, job_id = time.time(), ""
            with client.stream("POST", url, json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line.removeprefix("data: "))
                    job_id = chunk["id"].removeprefix("chatcmpl-")
                    if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                        sent.append((job_id, began, time.time()))
                        break
            time.sleep(0.2)  # the last one's end recorded: nothing of it overlaps the next
    return sent


def phase_events(log_path: Path) -> list[dict[str, Any]]:
    found = []
    for line in log_path.read_text().splitlines():
        if '"phase":{' in line:
            found.append(json.loads(line)["phase"])
    return found


def breakdown(
    settings: Settings, sent: list[tuple[str, float, float]], phases: list[dict[str, Any]]
) -> list[dict[str, float]]:
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    rows = []
    with psycopg.connect(dsn) as db:
        for job_id, began, received in sent:
            times = db.execute(
                "SELECT extract(epoch FROM created_at), extract(epoch FROM first_token_at) "
                "FROM jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
            assert times is not None
            created, first_token = float(times[0]), float(times[1])

            def first(name: str, after: float = began) -> dict[str, Any]:
                return min(
                    (p for p in phases if p["phase"] == name and p["began"] >= after),
                    key=lambda p: p["began"],
                )

            claim, prepare, hand_off = first("claim"), first("prepare"), first("hand_off")
            ms = {
                "api": created - began,
                "to_worker": claim["began"] - created,
                "claim": claim["ended"] - claim["began"],
                "prepare": prepare["ended"] - prepare["began"],
                "hand_off": hand_off["ended"] - hand_off["began"],
                "engine": first_token - hand_off["ended"],
                "out": received - first_token,
                "total": received - began,
            }
            rows.append({part: round(seconds * 1000, 3) for part, seconds in ms.items()})
    return rows


def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    figures = {}
    for part in PARTS:
        values = sorted(row[part] for row in rows)
        figures[part] = {
            "p50": round(statistics.median(values), 2),
            "p90": round(values[int(0.9 * (len(values) - 1))], 2),
            "min": round(values[0], 2),
        }
    own = sum(figures[part]["p50"] for part in PARTS if part not in ("engine", "total"))
    figures["queue_own_p50_sum"] = {"p50": round(own, 2)}
    return figures


def table(figures: dict[str, dict[str, float]]) -> str:
    lines = ["| part | p50 ms | p90 ms | min ms |", "| --- | --- | --- | --- |"]
    for part in PARTS:
        f = figures[part]
        lines.append(f"| {part} | {f['p50']:.2f} | {f['p90']:.2f} | {f['min']:.2f} |")
    own = figures["queue_own_p50_sum"]["p50"]
    lines.append(f"| the queue's own (all but engine), p50s summed | {own:.2f} | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    settings = get_settings()
    results = report_head(args)
    key = clean_slate(settings)
    with running_stack(settings):
        sent = send(settings, key, args.warm_up + args.requests, args.words)[args.warm_up :]
        rows = breakdown(settings, sent, phase_events(settings.run_dir / "worker.log"))
    results["figures"] = summary(rows)
    results["requests"] = rows
    write_report(args, "first-token", results, table(results["figures"]))


if __name__ == "__main__":
    main()
