"""API keys: made and revoked by `vqueue keys`, looked up by the API on every request.

A key is `vq-` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored: a
key that random needs no slow hash, and a leaked table does not give the keys away.
"""

import hashlib
import secrets
import uuid
from typing import Any

from sqlalchemy import Connection, Select, Update, func, select, update

from db.schema import api_keys

KEY_PREFIX = "vq-"
# Characters of a key shown in listings and logs, enough to tell keys apart.
SHOWN_CHARS = 11


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: Connection,
    name: str,
    *,
    admin: bool = False,
    requests_per_minute: int | None = None,
    max_queued_jobs: int | None = None,
    tokens_per_day: int | None = None,
    secret: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Insert a key; returns its row and the secret, which is shown this once."""
    secret = secret or KEY_PREFIX + secrets.token_urlsafe(32)
    row = (
        conn.execute(
            api_keys.insert()
            .values(
                id=uuid.uuid4(),
                name=name,
                key_hash=hash_key(secret),
                prefix=secret[:SHOWN_CHARS],
                admin=admin,
                requests_per_minute=requests_per_minute,
                max_queued_jobs=max_queued_jobs,
                tokens_per_day=tokens_per_day,
            )
            .returning(api_keys)
        )
        .mappings()
        .one()
    )
    return dict(row), secret


def active_key_by_hash(key_hash: str) -> Select[Any]:
    return select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))


def list_keys(include_revoked: bool = False) -> Select[Any]:
    query = select(api_keys).order_by(api_keys.c.created_at)
    return query if include_revoked else query.where(api_keys.c.revoked_at.is_(None))


def revoke_key(id_or_prefix: str) -> Update:
    """By id, or by the prefix a listing shows (48 random bits: one key)."""
    try:
        match = api_keys.c.id == uuid.UUID(id_or_prefix)
    except ValueError:
        match = api_keys.c.prefix == id_or_prefix
    return (
        update(api_keys)
        .where(match, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(api_keys)
    )
