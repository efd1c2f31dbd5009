"""`vqueue`: the command line, over the HTTP API (a remote server works the same).

The URL and API key come from --url/--key or VQUEUE_URL/VQUEUE_API_KEY. `vqueue keys` is the
exception: it manages keys in the database (see vqueue/client/key_admin.py).
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from vqueue.client.api_client import BATCH_FINAL, VQueueClient
from vqueue.client.key_admin import add_keys_parser

DEFAULT_URL = "http://127.0.0.1:8000"
RECONNECTS = 20


def _client(args: argparse.Namespace) -> VQueueClient:
    return VQueueClient(args.url, api_key=args.key)


def waiting(wait: dict[str, Any]) -> str:
    """A queued job's wait as a line: "queued: 12 ahead, starts in about 40 s"."""
    said = f"queued: {wait['position']} ahead"
    if wait.get("estimated_start_at"):
        start = datetime.fromisoformat(wait["estimated_start_at"])
        seconds = max(0, round((start - datetime.now(UTC)).total_seconds()))
        said += f", starts in about {seconds} s"
    return said


def _follow(client: VQueueClient, job_id: str, offset: int) -> int:
    """Print the job's text from `offset` as it streams, reconnecting where it left off.
    Returns the exit status: 0 when the job succeeded."""
    # The last event id seen ("<attempt>-<offset>"), or where to start in the current attempt.
    position, attempts, wrote = str(offset), 0, False
    while True:
        try:
            for event in client.stream(job_id, last_event_id=position):
                attempts = 0
                if event.event == "delta":
                    wrote = wrote or bool(event.data["text"])
                    sys.stdout.write(event.data["text"])
                    sys.stdout.flush()
                    position = event.id or position
                elif event.event == "queued" and not wrote:
                    sys.stderr.write(f"[{waiting(event.data)}]\n")
                    sys.stderr.flush()
                elif event.event == "restart":
                    sys.stderr.write(f"\n[attempt {event.data['attempt']} restarts the text]\n")
                    position = event.id or f"{event.data['attempt']}-0"
                elif event.event in {"error", "cancelled", "expired"}:
                    sys.stderr.write(f"\n[{event.event}: {event.data.get('message')}]\n")
                elif event.event == "done":
                    if not wrote and event.data["status"] == "succeeded" and offset == 0:
                        reason = event.data.get("finish_reason")
                        sys.stderr.write(f"[the job ended with no text (finish_reason: {reason})]")
                    sys.stdout.write("\n")
                    return 0 if event.data["status"] == "succeeded" else 1
        except httpx.TransportError as exc:
            attempts += 1
            if attempts > RECONNECTS:
                raise
            sys.stderr.write(f"\n[connection lost ({exc}); resuming at {position}]\n")
            time.sleep(min(0.2 * attempts, 2.0))


def cmd_submit(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"max_tokens": args.max_tokens, "priority": args.priority}
    if args.temperature is not None:
        body["temperature"] = args.temperature
    if args.deadline is not None:
        body["deadline_s"] = args.deadline
        body["on_infeasible"] = "accept" if args.accept_late else "reject"
    if args.webhook:
        body["webhook"] = {"url": args.webhook}
    if args.raw:
        if args.system:
            print("vqueue: --system needs a chat prompt; leave out --raw", file=sys.stderr)
            return 2
        body["prompt"] = args.prompt
    else:
        # An instruct model given a bare question as raw text often ends at once: the prompt
        # is a user turn, and the model's chat template makes it a conversation.
        system = [{"role": "system", "content": args.system}] if args.system else []
        body["messages"] = [*system, {"role": "user", "content": args.prompt}]
    with _client(args) as client:
        job = client.submit(**body)
        if job.get("warning"):
            sys.stderr.write(f"[warning: {job['warning']}]\n")
        if args.no_wait:
            print(job["id"])
            return 0
        return _follow(client, job["id"], 0)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(client.get(args.id), indent=2))
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _follow(client, args.id, args.offset)


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.cancel(args.id)["status"])
    return 0


def _progress(batch: dict[str, Any]) -> str:
    counts = batch["counts"]
    done = counts["succeeded"] + counts["failed"] + counts["cancelled"] + counts.get("expired", 0)
    total = max(counts["total"], 1)
    filled = int(30 * done / total)
    left = batch.get("estimated_seconds_left")
    eta = f", ~{left:.0f}s left" if left else ""
    return (
        f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{counts['total']} "
        f"({counts['running']} running, {counts['failed']} failed{eta})"
    )


def cmd_batch(args: argparse.Namespace) -> int:
    path = Path(args.file)
    options = {
        "format": args.format,
        "on_error": args.on_error,
        "max_tokens": args.max_tokens,
        "webhook_url": args.webhook,
    }
    with _client(args) as client:
        batch = client.upload_batch(path.read_bytes(), filename=path.name, **options)
        print(batch["id"])
        if not args.wait:
            return 0
        while batch["status"] not in BATCH_FINAL:
            sys.stderr.write(_progress(batch))
            sys.stderr.flush()
            time.sleep(1.0)
            batch = client.batch(batch["id"])
        sys.stderr.write(_progress(batch) + "\n")
        output = Path(args.output or f"{path.stem}.results.jsonl")
        with client.http.stream("GET", f"/batches/{batch['id']}/results") as response:
            response.raise_for_status()
            with output.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        print(f"{batch['status']}: results in {output}")
        return 0 if batch["status"] == "completed" else 1


def cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        response = client.http.get("/stats")
        response.raise_for_status()
        stats = response.json()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    oldest = stats["oldest_queued_s"]
    print(
        f"backlog {stats['backlog']} ({stats['in_broker']} in the broker), "
        f"running {stats['running']}, open batches {stats['open_batches']}, "
        f"oldest waiting {'-' if oldest is None else f'{oldest:.1f}s'}, "
        f"{stats['tokens_per_s']} tok/s"
    )
    for worker in stats["workers"]:
        print(
            f"  {worker['name']}: {worker['model']} on {worker.get('gpu') or 'CPU'}, "
            f"{worker['running']}/{worker['concurrency']} running, "
            f"{worker.get('tokens_per_s', 0)} tok/s"
        )
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    """Replace this process with the API or a worker, configured by the VQUEUE_* settings."""
    os.execv(sys.executable, [sys.executable, "-m", args.command])
    return 1  # not reached


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="vqueue", description=__doc__)
    root.add_argument("--url", default=os.environ.get("VQUEUE_URL", DEFAULT_URL))
    root.add_argument("--key", default=os.environ.get("VQUEUE_API_KEY"))
    commands = root.add_subparsers(dest="command", required=True)

    submit = commands.add_parser(
        "submit", help="submit a prompt and print the answer as it streams"
    )
    submit.add_argument("prompt")
    submit.add_argument("--system", help="a system message before the user turn")
    submit.add_argument(
        "--raw",
        action="store_true",
        help="send the prompt as plain text to continue, not as a chat turn",
    )
    submit.add_argument("--max-tokens", type=int, default=256)
    submit.add_argument("--temperature", type=float)
    submit.add_argument("--priority", type=int, default=5)
    submit.add_argument(
        "--deadline", type=float, metavar="SECONDS", help="done within this, or refused or cut off"
    )
    submit.add_argument(
        "--accept-late", action="store_true", help="queue it even if the estimate misses --deadline"
    )
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return")
    submit.add_argument("--webhook", metavar="URL", help="where the job's end is sent, signed")
    submit.set_defaults(run=cmd_submit)

    for name, run, text in (
        ("status", cmd_status, "a job's state as JSON"),
        ("cancel", cmd_cancel, "cancel a job"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("id")
        command.set_defaults(run=run)

    tail = commands.add_parser("tail", help="follow a job's text, resuming after disconnects")
    tail.add_argument("id")
    tail.add_argument("--offset", type=int, default=0, help="start after this many characters")
    tail.set_defaults(run=cmd_tail)

    batch = commands.add_parser("batch", help="upload a file of prompts")
    batch.add_argument("file")
    batch.add_argument("--format", choices=["jsonl", "openai", "csv", "text"])
    batch.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    batch.add_argument("--max-tokens", type=int, help="default for lines that set none")
    batch.add_argument("--wait", action="store_true", help="show progress, then download")
    batch.add_argument("--output", help="results file (default: <file>.results.jsonl)")
    batch.add_argument("--webhook", metavar="URL", help="where the batch's end is sent, signed")
    batch.set_defaults(run=cmd_batch)

    stats = commands.add_parser("stats", help="backlog, running jobs, workers")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(run=cmd_stats)

    add_keys_parser(commands)

    for name in ("api", "worker"):
        commands.add_parser(name, help=f"run the {name} process").set_defaults(run=cmd_process)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except httpx.HTTPStatusError as exc:
        try:
            message = exc.response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.response.text
        sys.stderr.write(f"vqueue: {exc.response.status_code}: {message}\n")
        return 2
    except httpx.TransportError as exc:
        sys.stderr.write(f"vqueue: cannot reach {args.url}: {exc}\n")
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
