"""`vqueue keys create|list|revoke`: API keys, managed on the server side.

Unlike the rest of the CLI this talks to Postgres (VQUEUE_DATABASE_URL), not to the HTTP API:
whoever can make keys already holds the database. A new key's secret is printed once; only
its hash is kept.
"""

import argparse
import json
from typing import Any

from db.engine import make_sync_engine
from db.keys import create_key, list_keys, revoke_key
from vqueue.settings import get_settings

LIMIT_FLAGS = (
    ("--rpm", "requests_per_minute", "requests per minute"),
    ("--max-queued", "max_queued_jobs", "jobs waiting in the queue at once"),
    ("--tokens-per-day", "tokens_per_day", "prompt and output tokens per day (UTC)"),
)


def _shown(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "prefix": row["prefix"],
        "admin": row["admin"],
        **{column: row[column] for _, column, _ in LIMIT_FLAGS},
        "created_at": row["created_at"].isoformat(),
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


def cmd_keys(args: argparse.Namespace) -> int:
    engine = make_sync_engine(get_settings().database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            if args.keys_command == "create":
                limits = {column: getattr(args, column) for _, column, _ in LIMIT_FLAGS}
                created, secret = create_key(conn, args.name, admin=args.admin, **limits)
                print(json.dumps({**_shown(created), "key": secret}, indent=2))
            elif args.keys_command == "list":
                for listed in conn.execute(list_keys(include_revoked=args.all)).mappings():
                    print(json.dumps(_shown(listed)))
            else:
                revoked = conn.execute(revoke_key(args.key_id)).mappings().all()
                if not revoked:
                    print(f"vqueue: no active key {args.key_id!r}")
                    return 1
                for gone in revoked:
                    print(f"revoked {gone['prefix']}… ({gone['name']})")
    finally:
        engine.dispose()
    return 0


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys (server side)")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="make a key and print it (shown only once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument("--admin", action="store_true", help="sees every key's jobs")
    for flag, column, text in LIMIT_FLAGS:
        create.add_argument(flag, dest=column, type=int, help=f"limit: {text}")
    listing = actions.add_parser("list", help="the active keys (prefixes, never secrets)")
    listing.add_argument("--all", action="store_true", help="revoked ones too")
    revoke = actions.add_parser("revoke", help="stop a key from working")
    revoke.add_argument("key_id", help="the key's id or prefix")
    keys.set_defaults(run=cmd_keys)
