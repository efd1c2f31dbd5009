"""Batch input files of the OpenAI Files API, kept in Postgres with their owner."""

import uuid
from typing import Any

from sqlalchemy import Insert, Select, delete, insert, select, tuple_
from sqlalchemy.sql.dml import ReturningDelete

from db.schema import files, owned_by


def insert_file(row: dict[str, Any]) -> Insert:
    """A new file; returns its created_at."""
    return insert(files).values(**row).returning(files.c.created_at)


def get_file(file_id: uuid.UUID, scope: uuid.UUID | None) -> Select[Any]:
    """The file, if a caller of this scope may see it."""
    return select(files).where(files.c.id == file_id, owned_by(files.c.owner_id, scope))


def list_files(
    scope: uuid.UUID | None,
    *,
    limit: int,
    newest_first: bool,
    after: uuid.UUID | None,
    purpose: str | None,
) -> Select[Any]:
    """Files a caller of this scope may see, without their content, by creation time; after
    the file `after` where given (OpenAI's cursor)."""
    columns = [column for column in files.c if column.name != "content"]
    order = (
        (files.c.created_at.desc(), files.c.id.desc())
        if newest_first
        else (files.c.created_at, files.c.id)
    )
    query = select(*columns).where(owned_by(files.c.owner_id, scope)).order_by(*order).limit(limit)
    if purpose is not None:
        query = query.where(files.c.purpose == purpose)
    if after is not None:
        cursor = select(files.c.created_at, files.c.id).where(files.c.id == after).subquery()
        key = tuple_(files.c.created_at, files.c.id)
        mark = tuple_(cursor.c.created_at, cursor.c.id)
        query = query.where(key < mark if newest_first else key > mark)
    return query


def delete_file(file_id: uuid.UUID, scope: uuid.UUID | None) -> ReturningDelete[Any]:
    """The file, if a caller of this scope may see it; returns its id. Batches made from it
    keep their jobs: they were stored when the batch was made."""
    return (
        delete(files)
        .where(files.c.id == file_id, owned_by(files.c.owner_id, scope))
        .returning(files.c.id)
    )
