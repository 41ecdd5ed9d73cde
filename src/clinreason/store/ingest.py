"""What an import writes: new item rows and the source references of every record read.

The caller owns the transaction (an import is all or nothing); every function works on one batch of
records with a bounded number of statements, whatever the batch size: existence is asked with the batch's
keys bound as one parameter, and rows go in by one COPY (PostgreSQL) or one executemany (SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from clinreason.domain.items import Item as ImportedItem
from clinreason.domain.items import SourceRef
from clinreason.store.common import bulk_insert, now, select_in
from clinreason.store.tables import item_sources, items


def existing_item_ids(conn: Connection, *, item_ids: list[str]) -> set[str]:
    """Which of these item ids are stored already (in any project)."""
    if not item_ids:
        return set()
    return {row[0] for row in select_in(conn, "SELECT id FROM items WHERE id IN ({keys})", item_ids)}


def add_items(conn: Connection, *, project_id: int, new: list[ImportedItem],
              flag_reasons: dict[str, str] | None = None) -> None:
    """Insert freshly imported items (one bulk insert). Each carries its id, content hash and state;
    `flag_reasons` maps an item id to why it was flagged on arrival."""
    if not new:
        return
    ts = now()
    flag_reasons = flag_reasons or {}
    bulk_insert(conn, items, [
        {"id": it.id, "project_id": project_id, "content_hash": it.content_hash, "question": it.question,
         "options": [[k, v] for k, v in it.options.items()], "answer_labels": it.answer_labels,
         "answer_text": it.answer_text, "language": it.language, "specialty": it.specialty,
         "context": it.context, "reference_explanation": it.reference_explanation, "meta": it.metadata,
         "state": it.state, "strikes": 0, "auto_retries": 0, "flag_reason": flag_reasons.get(it.id),
         "created_at": ts, "updated_at": ts}
        for it in new])


def add_new_sources(conn: Connection, *, refs: list[tuple[str, SourceRef]]) -> list[str]:
    """Store the (item id, source reference) pairs not stored yet — a re-import adds none, a reference
    listed twice is stored once. Returns the item id of every reference added, in order."""
    if not refs:
        return []
    stored = {tuple(row) for row in select_in(
        conn, "SELECT item_id, source, file, record FROM item_sources WHERE item_id IN ({keys})",
        list({item_id for item_id, _ in refs}))}
    ts = now()
    fresh: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for item_id, s in refs:
        key = (item_id, s.source, s.file, s.record)
        if key not in stored and key not in fresh:
            fresh[key] = {"item_id": item_id, "source": s.source, "subject": s.subject, "file": s.file,
                          "record": s.record, "license": s.license, "imported_at": ts}
    bulk_insert(conn, item_sources, list(fresh.values()))
    return [row["item_id"] for row in fresh.values()]
