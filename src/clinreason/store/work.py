"""Claiming work for LLM workers. Several workers (several machines on PostgreSQL) may run at once:
an item is claimed with compare-and-set (and `FOR UPDATE SKIP LOCKED` on PostgreSQL), and a claim is a
lease: a worker that died leaves items that another worker takes over once the lease runs out — at
once, when the dead worker ran on this host and its process is gone."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import Item
from clinreason.store.common import now as _now
from clinreason.store.decisions import add_event
from clinreason.store.items import item_from_row, transition_item, transition_items
from clinreason.store.rationales import latest_numbers
from clinreason.store.tables import items


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still exists (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def expire_dead_local_claims(conn: Connection, *, project_id: int) -> int:
    """Claims held by processes of this host that no longer exist are released at once."""
    host = socket.gethostname()
    rows = conn.execute(
        select(items.c.claimed_by).where(items.c.project_id == project_id, items.c.claimed_by.like(f"{host}:%"))
        .group_by(items.c.claimed_by)
    ).scalars().all()
    dead = [w for w in rows if w.rsplit(":", 1)[-1].isdigit() and int(w.rsplit(":", 1)[-1]) != os.getpid()
            and not pid_alive(int(w.rsplit(":", 1)[-1]))]
    if not dead:
        return 0
    past = _now() - timedelta(seconds=1)
    result = conn.execute(update(items).where(items.c.project_id == project_id, items.c.claimed_by.in_(dead))
                          .values(claimed_until=past))
    return result.rowcount or 0


def claim(conn: Connection, *, project_id: int, state: ItemState, worker: str, limit: int, lease_seconds: int,
          claim_to: ItemState | None = None) -> list[Item]:
    """Claim up to `limit` items that are in `state` and unclaimed (or whose lease ran out). With
    `claim_to`, fresh items also move to that state (e.g. imported -> generating), writing the Event;
    items already in `claim_to` with an expired lease (a dead worker's) are taken over as they are.
    Returns the claimed items with `next_version` = the number of their next rationale version."""
    now = _now()
    until = now + timedelta(seconds=lease_seconds)
    free = or_(items.c.claimed_until.is_(None), items.c.claimed_until < now)
    states = [state.value] + ([claim_to.value] if claim_to else [])
    cond = and_(items.c.project_id == project_id, items.c.state.in_(states), free)
    if claim_to:
        # a fresh item is never claimed yet; one in claim_to must have a lease that ran out
        cond = and_(cond, or_(items.c.state == state.value, items.c.claimed_until.is_not(None)))
    query = select(items).where(cond).order_by(items.c.created_at, items.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = [dict(r) for r in conn.execute(query).mappings()]
    claimed = _claim_in_bulk(conn, project_id=project_id, rows=rows, state=state, claim_to=claim_to, worker=worker,
                             until=until, free=free)
    if claimed is None:
        claimed = _claim_one_by_one(conn, project_id=project_id, rows=rows, state=state, claim_to=claim_to,
                                    worker=worker, until=until, free=free)
    if not claimed:
        return []
    numbers = latest_numbers(conn, item_ids=[r["id"] for r in claimed])
    result = []
    for row in claimed:
        item = item_from_row(row)
        item.next_version = numbers.get(item.id, 0) + 1
        result.append(item)
    return result


def _claim_in_bulk(conn: Connection, *, project_id: int, rows: list[dict[str, Any]], state: ItemState,
                   claim_to: ItemState | None, worker: str, until: datetime, free: Any) -> list[dict[str, Any]] | None:
    """The common case, in two statements: every selected row is still free (SQLite holds the write
    lock, PostgreSQL the row locks). None when some row moved meanwhile; nothing is changed then."""
    fresh = [r for r in rows if r["state"] == state.value and r["claimed_by"] is None]
    if len(fresh) != len(rows):
        return None
    ids = [r["id"] for r in rows]
    with conn.begin_nested() as savepoint:
        if claim_to:
            ok = transition_items(conn, project_id=project_id, item_ids=ids, expected=state, target=claim_to,
                                       actor=f"worker:{worker}", extra_where=and_(items.c.claimed_by.is_(None), free),
                                       claimed_by=worker, claimed_until=until)
        else:
            result = conn.execute(update(items).where(items.c.id.in_(ids), items.c.state == state.value,
                                                      items.c.claimed_by.is_(None), free)
                                  .values(claimed_by=worker, claimed_until=until))
            ok = result.rowcount == len(ids)
        if not ok:
            savepoint.rollback()
            return None
    for row in rows:
        row["claimed_by"], row["claimed_until"] = worker, until
        if claim_to:
            row["state"] = claim_to.value
    return rows


def _claim_one_by_one(conn: Connection, *, project_id: int, rows: list[dict[str, Any]], state: ItemState,
                      claim_to: ItemState | None, worker: str, until: datetime, free: Any) -> list[dict[str, Any]]:
    claimed: list[dict[str, Any]] = []
    for row in rows:
        same_holder = (items.c.claimed_by.is_(None) if row["claimed_by"] is None
                       else items.c.claimed_by == row["claimed_by"])
        cas = update(items).where(items.c.id == row["id"], items.c.state == row["state"], same_holder, free)
        if claim_to and row["state"] == state.value:
            with conn.begin_nested():
                result = conn.execute(cas.values(claimed_by=worker, claimed_until=until))
                if result.rowcount != 1:
                    continue
                transition_item(conn, item_id=row["id"], expected=state, target=claim_to, actor=f"worker:{worker}")
            row["state"] = claim_to.value
        else:
            result = conn.execute(cas.values(claimed_by=worker, claimed_until=until))
            if result.rowcount != 1:
                continue
            if row["claimed_by"]:
                add_event(conn, project_id=project_id, item_id=row["id"], kind="item.reclaimed",
                               actor=f"worker:{worker}", before={"claimed_by": row["claimed_by"]},
                               after={"claimed_by": worker})
        row["claimed_by"], row["claimed_until"] = worker, until
        claimed.append(row)
    return claimed


def expire_claim(conn: Connection, *, item_id: str, worker: str) -> None:
    """Hand a claim back untouched: its lease ends now, so the next worker takes the item over at once
    (its state does not change; an item in `generating` is taken over, not drafted from scratch)."""
    conn.execute(update(items).where(items.c.id == item_id, items.c.claimed_by == worker)
                 .values(claimed_until=_now() - timedelta(seconds=1)))


def release_claim(conn: Connection, *, item_id: str) -> None:
    """Drop the item's claim altogether (nothing was done with it)."""
    conn.execute(update(items).where(items.c.id == item_id).values(claimed_by=None, claimed_until=None))


def count_waiting(conn: Connection, *, project_id: int, states: list[str], now: datetime | None = None) -> int:
    now = now or _now()
    return conn.execute(
        select(func.count()).where(items.c.project_id == project_id, items.c.state.in_(states),
                                   or_(items.c.claimed_until.is_(None), items.c.claimed_until < now))
    ).scalar_one()
