"""What the API and the pages show, assembled once: item histories, the review payload, progress.
Everything a reviewer sees passes through the blindness rules here (`visible_reviews`, redaction)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, func, select

from clinreason.config import ReviewConfig
from clinreason.domain.lifecycle import ItemState
from clinreason.stages import review as stage
from clinreason.store import repository as repo
from clinreason.store.tables import assignments, checks, items, projects, rationales, reviews
from clinreason.web.auth import Principal

SENIOR_ROLES = ("admin", "adjudicator")
HIDDEN_ACTOR = "user:another-expert"


class NotFound(LookupError):
    """404: no such thing in the caller's project."""


def review_config(project: dict[str, Any]) -> ReviewConfig:
    return ReviewConfig.model_validate((project.get("config") or {}).get("review") or {})


def project_row(conn: Connection, principal: Principal) -> dict[str, Any]:
    row = conn.execute(select(projects).where(projects.c.id == principal.project_id)).mappings().one()
    return dict(row)


def iso(value: Any) -> Any:
    value = stage.aware(value) if hasattr(value, "tzinfo") else value
    return value.isoformat() if hasattr(value, "isoformat") else value


def _redact_actor(actor: str | None, principal: Principal) -> str | None:
    if principal.role in SENIOR_ROLES or not actor or not actor.startswith("user:") or actor == principal.actor:
        return actor
    return HIDDEN_ACTOR


Body = TypeVar("Body", bound=BaseModel)


def form_body(model: type[Body], **values: Any) -> Body:
    """Validate a page form with the JSON API's model: a bad field is a 422 naming it, as over JSON."""
    try:
        return model(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "form"
        raise stage.ReviewError(field, f"{field}: {first['msg']}") from None


def item_row(conn: Connection, principal: Principal, item_id: str) -> dict[str, Any]:
    item = repo.get_item(conn, project_id=principal.project_id, item_id=item_id)
    if item is None:
        raise NotFound(f"item {item_id} does not exist in project '{principal.project}'")
    return item


def _senior(principal: Principal | None) -> bool:
    return principal is not None and principal.role in ("admin", "adjudicator")


def _is_probe(item: dict[str, Any], principal: Principal | None) -> bool:
    """A calibration item seen by a reviewer: it must look like any other item in review."""
    return item["state"] == ItemState.CALIBRATION.value and not _senior(principal)


def _probe_event(row: dict[str, Any]) -> bool:
    """Events that would give a calibration item away: its results, and its moves into or out of the
    calibration state (whose detail names the known truth)."""
    states = {part.get("state") for part in (row["before"], row["after"]) if isinstance(part, dict)}
    detail = row["detail"] if isinstance(row["detail"], dict) else {}
    return row["kind"].startswith("calibration.") or ItemState.CALIBRATION.value in states \
        or "calibration" in detail or "expect" in detail


def item_basics(item: dict[str, Any], principal: Principal | None = None) -> dict[str, Any]:
    state = ItemState.IN_REVIEW.value if _is_probe(item, principal) else item["state"]
    return {
        "id": item["id"], "question": item["question"],
        "options": {label: text for label, text in item["options"]},
        "answer": list(item["answer_labels"]), "answer_text": item["answer_text"],
        "language": item["language"], "specialty": item["specialty"], "context": item["context"],
        "state": state, "strikes": item["strikes"], "flag_reason": item["flag_reason"],
    }


def rationale_dict(row: dict[str, Any], principal: Principal) -> dict[str, Any]:
    return {
        "id": row["id"], "version": row["version"], "parent_version": row["parent_version"], "origin": row["origin"],
        "author": _redact_actor(row["author"], principal), "text": row["text"], "steps": row["steps"],
        "final_answer": row["final_answer"], "model": row["model"], "parse_status": row["parse_status"],
        "created_at": iso(row["created_at"]),
    }


def check_dict(row: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    out = {"rationale_id": row["rationale_id"], "name": row["name"], "passed": row["passed"],
           "blocking": row["blocking"], "score": row["score"], "detail": row["detail"],
           "created_at": iso(row["created_at"])}
    if version is not None:
        out["version"] = version
    return out


def review_dict(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "rationale_id": row["rationale_id"], "version": row["version"],
            "reviewer": row["reviewer"], "verdict": row["verdict"], "scores": row["scores"],
            "comments": row["comments"], "edited_text": row["edited_text"], "seconds_spent": row["seconds_spent"],
            "rubric_version": row["rubric_version"], "created_at": iso(row["created_at"])}


def _event_dict(row: dict[str, Any], principal: Principal, unlocked: set[str]) -> dict[str, Any]:
    detail = dict(row["detail"] or {})
    actor = _redact_actor(row["actor"], principal)
    if actor == HIDDEN_ACTOR and row["kind"].startswith(("review.", "assignment.")) \
            and detail.get("rationale_id") not in unlocked:
        detail = {k: v for k, v in detail.items() if k in ("version",)}
    return {"kind": row["kind"], "actor": actor, "at": iso(row["at"]), "before": row["before"],
            "after": row["after"], "detail": detail}


def item_history(conn: Connection, principal: Principal, item_id: str) -> dict[str, Any]:
    """GET /api/items/{id}: the item, every version, every check, the reviews this caller may see, events."""
    item = item_row(conn, principal, item_id)
    versions = [dict(r) for r in conn.execute(
        select(rationales).where(rationales.c.item_id == item_id).order_by(rationales.c.version)).mappings()]
    version_of = {v["id"]: v["version"] for v in versions}
    check_rows = [dict(r) for r in conn.execute(
        select(checks).where(checks.c.rationale_id.in_(list(version_of) or [""])).order_by(checks.c.id)).mappings()]
    visible = stage.visible_reviews(conn, item_id=item_id, viewer_id=principal.user_id, viewer_role=principal.role)
    unlocked = stage.reviewed_versions(conn, item_id=item_id, reviewer_id=principal.user_id)
    return {
        **item_basics(item, principal),
        "versions": [rationale_dict(v, principal) for v in versions],
        "checks": [check_dict(c, version_of.get(c["rationale_id"])) for c in check_rows],
        "reviews": [review_dict(r) for r in visible],
        "events": [_event_dict(e, principal, unlocked) for e in repo.item_events(conn, item_id=item_id)
                   if not (_is_probe(item, principal) and _probe_event(e))],
        "sources": [{"source": s["source"], "file": s["file"], "record": s["record"], "subject": s["subject"],
                     "license": s["license"]} for s in repo.item_source_rows(conn, item_id=item_id)],
    }


def assignment_payload(conn: Connection, principal: Principal, assignment_id: str) -> dict[str, Any]:
    """What a reviewer needs to review one leased version (GET /api/queue/next and the review screen)."""
    a = stage.get_assignment(conn, project_id=principal.project_id, assignment_id=assignment_id,
                             reviewer_id=principal.user_id)
    item = item_row(conn, principal, a["item_id"])
    rat = dict(conn.execute(select(rationales).where(rationales.c.id == a["rationale_id"])).mappings().one())
    parent = None
    if rat["parent_version"] is not None:
        row = conn.execute(select(rationales).where(rationales.c.item_id == item["id"],
                                                    rationales.c.version == rat["parent_version"])).mappings().first()
        parent = rationale_dict(dict(row), principal) if row else None
    check_rows = conn.execute(select(checks).where(checks.c.rationale_id == rat["id"]).order_by(checks.c.id)).mappings()
    draft = stage.load_draft(conn, rationale_id=rat["id"], reviewer_id=principal.user_id)
    return {
        "assignment_id": a["id"], "status": a["status"], "expires_at": iso(a["expires_at"]),
        "created_at": iso(a["created_at"]),
        "item": item_basics(item, principal),
        "rationale": rationale_dict(rat, principal),
        "parent": parent,
        "checks": [check_dict(dict(c), rat["version"]) for c in check_rows],
        "rubric": repo.latest_rubric(conn, project_id=principal.project_id),
        "draft": {"body": draft["body"], "seconds_spent": draft["seconds_spent"],
                  "updated_at": iso(draft["updated_at"])} if draft else None,
    }


def escalated_items(conn: Connection, principal: Principal, limit: int = 500) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(items.c.id, items.c.question, items.c.specialty, items.c.strikes, items.c.flag_reason,
               items.c.updated_at)
        .where(items.c.project_id == principal.project_id, items.c.state == "escalated")
        .order_by(items.c.updated_at, items.c.id).limit(limit)).mappings()
    return [{**dict(r), "updated_at": iso(r["updated_at"])} for r in rows]


def reviewer_progress(conn: Connection, principal: Principal) -> dict[str, Any]:
    mine = conn.execute(
        select(func.count(), func.coalesce(func.sum(reviews.c.seconds_spent), 0.0))
        .select_from(reviews.join(items, items.c.id == reviews.c.item_id))
        .where(items.c.project_id == principal.project_id, reviews.c.reviewer_id == principal.user_id)).one()
    return {"reviews": int(mine[0]), "hours": round(float(mine[1]) / 3600, 2)}


def open_leases(conn: Connection, principal: Principal) -> int:
    return conn.execute(
        select(func.count()).select_from(assignments.join(items, items.c.id == assignments.c.item_id))
        .where(items.c.project_id == principal.project_id, assignments.c.status == "open",
               assignments.c.expires_at > repo.now())).scalar_one()
