"""What the single-purpose benchmarks (serve_compare, batch_compare, first_token,
wait_estimates) share: a clean stack state, the run's own stack, a report's head and files,
and one side of a comparison per call: a GPU host's call
limit may not fit the queue and its peer one after the other, so `--side queue` then `--side
peer` (same host, same --out) run them apart and the second completes the report the first
left."""

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis import Redis

from benchmarks.__main__ import wait_for_workers
from db.migrate import reset_database
from vqueue.dev import stack
from vqueue.settings import Settings

SIDES = ("both", "queue", "peer")


def add_side_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--side",
        choices=SIDES,
        default="both",
        help="run one side only, adding it to the report an earlier call wrote to --out",
    )


def runs(side: str, which: str) -> bool:
    return side in ("both", which)


def results_to_extend(path: Path, side: str, fresh: dict[str, Any]) -> dict[str, Any]:
    """The report to add this call's side to: the earlier call's when running one side of a
    comparison whose other side is there, else `fresh`."""
    if side == "both" or not path.exists():
        return fresh
    earlier: dict[str, Any] = json.loads(path.read_text())
    earlier.setdefault("calls", []).append({"side": side, "started": fresh["started"]})
    return earlier


def clean_slate(settings: Settings) -> str:
    """An empty database and Redis db for the run's own stack; the key to call it with."""
    reset_database(settings.database_url)
    Redis.from_url(settings.redis_url).flushdb()
    return stack.local_key(settings) or ""


def report_head(args: argparse.Namespace) -> dict[str, Any]:
    """A report's first fields: its label, the arguments it ran with, when it began."""
    args.out.mkdir(parents=True, exist_ok=True)
    return {
        "label": args.label,
        "args": vars(args) | {"out": str(args.out)},
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


@contextmanager
def running_stack(settings: Settings) -> Iterator[str]:
    """The run's own stack, up with its worker's engine loaded; its base URL. Stopped after."""
    stack.up(settings)
    try:
        wait_for_workers(settings, 1)
        yield stack.base_url(settings)
    finally:
        stack.down(settings)


def write_report(args: argparse.Namespace, name: str, results: dict[str, Any], table: str) -> None:
    """OUT/NAME-LABEL.json (every figure) and .md (the table), and the table printed."""
    base = args.out / f"{name}-{args.label}"
    base.with_suffix(".json").write_text(json.dumps(results, indent=2))
    base.with_suffix(".md").write_text(table)
    print(table, flush=True)
