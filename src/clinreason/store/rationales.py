"""Rationale versions and their automatic checks.

`add_version` (and its bulk form `add_versions`) is the one way a rationale version is born: its number,
parent, origin, parsed steps and final answer, and its fingerprint are all settled in `_birth`, so every
origin — a model's draft, a guided regeneration, an expert's edit, an adjudicator's text, a seeded
calibration version — gets the same treatment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, bindparam, func, insert, select, union

from clinreason.domain.checks import FingerprintIndex, fingerprint_blocks, simhash
from clinreason.domain.rationale_text import ParsedRationale, parse_expert_text, parse_rationale
from clinreason.domain.records import Check, Item, Origin, RationaleVersion
from clinreason.store.common import insert_ignoring_duplicates, new_id, now
from clinreason.store.hot import Hot
from clinreason.store.tables import checks, fingerprint_block, items, llm_cache, rationales


@dataclass(slots=True)
class NewVersion:
    """What a caller knows about a version about to be born. Steps and final answer are parsed from
    `text` unless `parsed` is given (a model's completion, parsed by the stage that asked for it)."""

    item: Item
    origin: Origin | str
    author: str
    text: str
    #: a model draft's parse: steps, final_answer, parse_status, parse_error (from generate.parse_completion)
    parsed: dict[str, Any] | None = None
    #: the number the version must carry (a worker's claim fixed it); default: the item's next number
    version: int | None = None
    #: the version this one revises; default: the previous number
    parent_version: int | None = None
    #: the final answer to keep when an expert's text names none (default: the item's gold labels)
    fallback_final: list[str] | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    prompt_hash: str | None = None
    seed: int | None = None
    idempotency_key: str | None = None
    raw_output: str | None = None
    reasoning: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_ms: float | None = None
    rationale_id: str | None = None


def _birth(new: NewVersion, number: int) -> RationaleVersion:
    origin = Origin(new.origin)
    text = new.text
    parse_status, parse_error = "ok", None
    if new.parsed is not None:
        steps, final = list(new.parsed["steps"]), list(new.parsed["final_answer"])
        parse_status, parse_error = new.parsed.get("parse_status", "ok"), new.parsed.get("parse_error")
    elif origin is Origin.ADJUDICATED:
        result = parse_rationale(text, dict(new.item.options))
        if isinstance(result, ParsedRationale):
            steps, final = result.steps, result.final_answer
        else:
            steps = [line.strip() for line in text.splitlines() if line.strip()]
            final = list(new.item.answer_labels)
            parse_status, parse_error = "failed", result.reason
    else:
        fallback = new.fallback_final if new.fallback_final is not None else list(new.item.answer_labels)
        steps, final = parse_expert_text(text, option_labels=new.item.option_labels, fallback=fallback)
    parent = new.parent_version if new.parent_version is not None else (number - 1 if number > 1 else None)
    return RationaleVersion(
        id=new.rationale_id or new_id(), item_id=new.item.id, version=number, origin=origin.value, author=new.author,
        steps=steps, final_answer=final, text=text, parent_version=parent, model=new.model, params=dict(new.params),
        prompt_hash=new.prompt_hash, seed=new.seed, raw_output=new.raw_output, reasoning=new.reasoning,
        prompt_tokens=new.prompt_tokens, completion_tokens=new.completion_tokens, cost=new.cost,
        latency_ms=new.latency_ms, parse_status=parse_status, parse_error=parse_error,
        idempotency_key=new.idempotency_key, fingerprint=simhash(text) if text.strip() else None, created_at=now())


@dataclass(frozen=True, slots=True)
class PreparedVersion:
    """A version born ahead of its INSERT, its number fixed by a claim: parsing and the fingerprint cost
    CPU, which a worker spends before it takes the write turn (`prepare`, then `add_versions`)."""

    born: RationaleVersion


def prepare(new: NewVersion) -> PreparedVersion:
    if new.version is None:
        raise ValueError("prepare() needs the version's number (a worker's claim fixes it)")
    return PreparedVersion(_birth(new, new.version))


def add_versions(conn: Connection, new: list[NewVersion | PreparedVersion]) -> list[RationaleVersion]:
    """Store several new versions in one INSERT (a worker's batch). Raises IntegrityError when one of
    them lost a race (its number or idempotency key is taken); the caller rolls back."""
    if not new:
        return []
    unnumbered = sorted({n.item.id for n in new if isinstance(n, NewVersion) and n.version is None})
    latest = latest_numbers(conn, item_ids=unnumbered) if unnumbered else {}
    born: list[RationaleVersion] = []
    for n in new:
        if isinstance(n, PreparedVersion):
            born.append(n.born)
            continue
        if n.version is None:
            number = latest.get(n.item.id, 0) + 1
            latest[n.item.id] = number
        else:
            number = n.version
        born.append(_birth(n, number))
    conn.execute(insert(rationales), [v.to_dict() for v in born])
    return born


def add_version(conn: Connection, new: NewVersion) -> RationaleVersion:
    """The one way a rationale version is born (see the module docstring)."""
    return add_versions(conn, [new])[0]


def version_from_row(row: RowMapping | dict[str, Any]) -> RationaleVersion:
    return RationaleVersion(
        id=row["id"], item_id=row["item_id"], version=row["version"], origin=row["origin"], author=row["author"],
        steps=list(row["steps"] or []), final_answer=list(row["final_answer"] or []), text=row["text"],
        parent_version=row["parent_version"], model=row["model"], params=dict(row["params"] or {}),
        prompt_hash=row["prompt_hash"], seed=row["seed"], raw_output=row["raw_output"], reasoning=row["reasoning"],
        prompt_tokens=row["prompt_tokens"] or 0, completion_tokens=row["completion_tokens"] or 0,
        cost=row["cost"] or 0.0, latency_ms=row["latency_ms"], parse_status=row["parse_status"],
        parse_error=row["parse_error"], idempotency_key=row["idempotency_key"], fingerprint=row["fingerprint"],
        created_at=row["created_at"])


def latest_numbers(conn: Connection, *, item_ids: list[str]) -> dict[str, int]:
    """Item id -> its highest version number (items without a version are absent)."""
    return {item_id: int(n) for item_id, n in conn.execute(
        select(rationales.c.item_id, func.max(rationales.c.version))
        .where(rationales.c.item_id.in_(item_ids)).group_by(rationales.c.item_id)).all()}


# read on every submission: built once
_LATEST_VERSION = Hot(select(rationales).where(rationales.c.item_id == bindparam("item_id")) \
    .order_by(rationales.c.version.desc()).limit(1))
_GET_VERSION = Hot(select(rationales).where(rationales.c.id == bindparam("rationale_id")))


def latest_version(conn: Connection, *, item_id: str) -> RationaleVersion | None:
    """The item's current version: the highest number."""
    row = _LATEST_VERSION.run(conn, {"item_id": item_id}).mappings().first()
    return version_from_row(row) if row else None


def latest_versions(conn: Connection, *, item_ids: list[str]) -> dict[str, RationaleVersion]:
    """Item id -> its current version, for many items in one query."""
    if not item_ids:
        return {}
    top = (select(rationales.c.item_id, func.max(rationales.c.version).label("v"))
           .where(rationales.c.item_id.in_(item_ids)).group_by(rationales.c.item_id).subquery())
    rows = conn.execute(select(rationales).join(top, (top.c.item_id == rationales.c.item_id)
                                                & (top.c.v == rationales.c.version))).mappings()
    return {r["item_id"]: version_from_row(r) for r in rows}


def get_version(conn: Connection, *, rationale_id: str) -> RationaleVersion | None:
    row = _GET_VERSION.run(conn, {"rationale_id": rationale_id}).mappings().first()
    return version_from_row(row) if row else None


def versions_of(conn: Connection, *, item_id: str) -> list[RationaleVersion]:
    """Every version of the item, oldest first."""
    rows = conn.execute(select(rationales).where(rationales.c.item_id == item_id)
                        .order_by(rationales.c.version)).mappings()
    return [version_from_row(r) for r in rows]


def latest_fingerprints(conn: Connection, *, project_id: int) -> dict[str, int]:
    """Item id -> the fingerprint of its latest fingerprinted version (one query)."""
    found: dict[str, tuple[int, int]] = {}
    for item_id, version, fp in conn.execute(
        select(rationales.c.item_id, rationales.c.version, rationales.c.fingerprint)
        .join(items, items.c.id == rationales.c.item_id)
        .where(items.c.project_id == project_id, rationales.c.fingerprint.is_not(None))
    ):
        if item_id not in found or version > found[item_id][0]:
            found[item_id] = (version, fp)
    return {item_id: fp for item_id, (_, fp) in found.items()}


def near_fingerprints_statement(*, project_id: int, fingerprint: int) -> Select[Any]:
    """The versions (item_id, version, fingerprint) of the project's items that have one version sharing a
    16-bit block with `fingerprint`: one look-up in each block index, then those items' versions."""
    found = union(*(select(rationales.c.item_id).where(fingerprint_block(i) == value)
                    for i, value in enumerate(fingerprint_blocks(fingerprint)))).subquery()
    return (select(rationales.c.item_id, rationales.c.version, rationales.c.fingerprint)
            .join(items, items.c.id == rationales.c.item_id)
            .where(rationales.c.item_id.in_(select(found.c.item_id)), items.c.project_id == project_id,
                   rationales.c.fingerprint.is_not(None)))


def near_fingerprints(conn: Connection, *, project_id: int, fingerprint: int) -> dict[str, int]:
    """Item id -> latest fingerprint, for the items of the project whose latest fingerprint shares one of
    its four 16-bit blocks with `fingerprint`: every item within 3 bits of it, and few others."""
    latest: dict[str, tuple[int, int]] = {}
    for item_id, version, fp in conn.execute(near_fingerprints_statement(project_id=project_id,
                                                                         fingerprint=fingerprint)):
        if item_id not in latest or version > latest[item_id][0]:
            latest[item_id] = (version, fp)
    # an item found through an older version whose latest shares no block is left to the caller's index
    return {item_id: fp for item_id, (_, fp) in latest.items()}


class StoredNeighbours:
    """The project's latest fingerprints as the database holds them, for one near-duplicate check in the
    caller's transaction: within 3 bits, through the block indexes (a handful of rows); wider, every item's
    latest fingerprint (one query over every version of the project, as a screening batch reads it)."""

    def __init__(self, conn: Connection, project_id: int) -> None:
        self.conn, self.project_id = conn, project_id

    def nearest(self, fp: int, *, exclude: str | None, max_distance: int) -> tuple[str | None, int]:
        index = FingerprintIndex()
        latest = near_fingerprints(self.conn, project_id=self.project_id, fingerprint=fp) if max_distance <= 3 \
            else latest_fingerprints(self.conn, project_id=self.project_id)
        for item_id, other in latest.items():
            index.add(item_id, other)
        return index.nearest(fp, exclude=exclude, max_distance=max_distance)


# --- checks ---------------------------------------------------------------------------------------

def _check(row: RowMapping | dict[str, Any]) -> Check:
    return Check(rationale_id=row["rationale_id"], name=row["name"], passed=bool(row["passed"]), score=row["score"],
                 detail=row["detail"] or "", blocking=bool(row["blocking"]), id=row["id"],
                 created_at=row["created_at"])


def add_checks(conn: Connection, results: list[Check]) -> None:
    ts = now()
    if results:
        conn.execute(insert(checks), [
            {"rationale_id": c.rationale_id, "name": c.name, "passed": c.passed, "blocking": c.blocking,
             "score": c.score, "detail": c.detail, "created_at": ts} for c in results])


#: one version's checks (consensus reads them on every submission): a hot statement each
_CHECKS_OF = Hot(select(checks).where(checks.c.rationale_id == bindparam("rationale_id")).order_by(checks.c.id))
_FAILED_CHECKS_OF = Hot(select(checks).where(checks.c.rationale_id == bindparam("rationale_id"),
                                             checks.c.passed.is_(False)).order_by(checks.c.id))


def checks_of(conn: Connection, *, rationale_ids: list[str], failed_only: bool = False) -> list[Check]:
    if not rationale_ids:
        return []
    if len(rationale_ids) == 1:
        one = _FAILED_CHECKS_OF if failed_only else _CHECKS_OF
        return [_check(r) for r in one.run(conn, {"rationale_id": rationale_ids[0]}).mappings()]
    query = select(checks).where(checks.c.rationale_id.in_(rationale_ids))
    if failed_only:
        query = query.where(checks.c.passed.is_(False))
    return [_check(r) for r in conn.execute(query.order_by(checks.c.id)).mappings()]


# --- the response cache ---------------------------------------------------------------------------

def cached_responses(conn: Connection, *, request_hashes: list[str]) -> dict[str, dict[str, Any]]:
    if not request_hashes:
        return {}
    return {h: dict(r) for h, r in conn.execute(select(llm_cache.c.request_hash, llm_cache.c.response)
                                                 .where(llm_cache.c.request_hash.in_(request_hashes))).all()}


def cache_responses(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows of request_hash, model, response: the first writer of a hash wins."""
    ts = now()
    insert_ignoring_duplicates(conn, llm_cache, [{"created_at": ts, **r} for r in rows])
