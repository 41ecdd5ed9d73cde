"""Calibration items: rationale versions whose truth an admin knows — a known-good version, or one with a
seeded error — slipped into reviewers' queues at `review.calibration_rate` to measure the reviewers.

A calibration item leaves the normal flow (state `calibration`: no consensus, never exported). To a
reviewer it is leased, shown and submitted exactly like any other version — same pages, same API, same
lease — so it cannot be told apart; each reviewer sees each calibration version at most once. Their
results are the known truths that anchor the reliability model (stages/consensus.fit_evidence) and are
shown per reviewer on the dashboard.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection

from clinreason.analytics.reliability import calibration_results
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.messages import N_, Translatable
from clinreason.domain.records import Origin, RationaleVersion
from clinreason.stages.settings import review_config
from clinreason.store import calibration as probes
from clinreason.store import items as item_store
from clinreason.store import rationales as rationale_store
from clinreason.store import reviews as review_store
from clinreason.store.decisions import add_event
from clinreason.store.queue import Candidate
from clinreason.store.rationales import NewVersion

EXPECTATIONS = ("good", "bad")
MARKABLE = (ItemState.IN_REVIEW.value, ItemState.ESCALATED.value)


class CalibrationError(Translatable, ValueError):
    """A calibration request that cannot be carried out; the message says why. `field`: the request field
    at fault (`expect`, `version`, `seeded_text`), or None when the item's state is the reason."""

    def __init__(self, template: str, params: dict[str, Any] | None = None, *, field: str | None = None):
        super().__init__(template, params)
        self.field = field


def rate(conn: Connection, project_id: int) -> float:
    """The project's `review.calibration_rate`."""
    return review_config(conn, project_id).calibration_rate


def mark(conn: Connection, *, project_id: int, item_id: str, expect: str, actor: str, version: int | None = None,
         note: str = "", seeded_text: str | None = None) -> dict[str, Any]:
    """Make `item_id` a calibration item whose version `version` (default: the latest) is known `expect`
    (good | bad). With `seeded_text`, a new version carrying that text (e.g. the latest with an error
    seeded into it) is stored first and becomes the calibration version."""
    if expect not in EXPECTATIONS:
        raise CalibrationError(N_("expect must be one of {choices}, not '{value}'"),
                               {"choices": ", ".join(EXPECTATIONS), "value": expect}, field="expect")
    item = item_store.lock_item(conn, item_id=item_id)
    if item is None or item.project_id != project_id:
        raise CalibrationError(N_("item {item_id} does not exist in this project"), {"item_id": item_id})
    if item.state not in MARKABLE:
        raise CalibrationError(N_("item {item_id} is '{state}': only items in review or escalated can become "
                                  "calibration items (accepted and excluded items are final)"),
                               {"item_id": item_id, "state": item.state})
    versions = rationale_store.versions_of(conn, item_id=item_id)
    if not versions:
        raise CalibrationError(N_("item {item_id} has no rationale version to calibrate with"), {"item_id": item_id})
    chosen: RationaleVersion | None = versions[-1] if version is None else next(
        (v for v in versions if v.version == version), None)
    if chosen is None:
        raise CalibrationError(N_("item {item_id} has no version {version} (it has 1 to {last})"),
                               {"item_id": item_id, "version": version, "last": versions[-1].version}, field="version")
    if seeded_text is not None:
        if not seeded_text.strip():
            raise CalibrationError(N_("the seeded text is empty"), field="seeded_text")
        # the seeded text is a version of its own: its steps and final answer are parsed from it
        seeded_id = hashlib.sha256(f"{chosen.id}:seeded:{versions[-1].version + 1}".encode()).hexdigest()[:32]
        chosen = rationale_store.add_version(conn, NewVersion(
            item=item, origin=Origin.EDITED, author=actor, text=seeded_text, parent_version=chosen.version,
            fallback_final=chosen.final_answer, rationale_id=seeded_id))
    item_store.transition_item(conn, item_id=item_id, expected=item.state, target=ItemState.CALIBRATION, actor=actor,
                               detail={"rationale_id": chosen.id, "version": chosen.version, "expect": expect})
    probes.add_probe(conn, project_id=project_id, item_id=item_id, rationale_id=chosen.id, expect=expect, note=note,
                     actor=actor)
    return {"item_id": item_id, "rationale_id": chosen.id, "version": chosen.version, "expect": expect}


def unmark(conn: Connection, *, project_id: int, item_id: str, actor: str) -> None:
    """Withdraw a calibration item: it returns to review as any other item (its reviews stay)."""
    if not probes.remove_probe(conn, project_id=project_id, item_id=item_id):
        raise CalibrationError(N_("item {item_id} is not a calibration item of this project"), {"item_id": item_id})
    item_store.transition_item(conn, item_id=item_id, expected=ItemState.CALIBRATION, target=ItemState.IN_REVIEW,
                               actor=actor, detail={"calibration": "withdrawn"})


def _draw(reviewer_id: int, served: int) -> float:
    """A uniform number fixed by the reviewer and how many leases they have had: reproducible."""
    return int(hashlib.sha256(f"calibration:{reviewer_id}:{served}".encode()).hexdigest()[:8], 16) / 2**32


def candidate(conn: Connection, *, project_id: int, reviewer_id: int, author: str, rate: float) -> Candidate | None:
    """The calibration version to serve this reviewer now, or None: drawn at `rate` per lease, among
    calibration versions they have neither reviewed, been leased nor written."""
    if rate <= 0:
        return None
    found = probes.unseen_probe(conn, project_id=project_id, reviewer_id=reviewer_id, author=author)
    if found is None:  # the usual case (no probe left for them): no draw to make
        return None
    served = review_store.served_count(conn, reviewer_id=reviewer_id)
    return found if _draw(reviewer_id, served) < rate else None


def results(conn: Connection, *, project_id: int) -> dict[str, dict[str, Any]]:
    """Per reviewer (username): calibration reviews, how many matched the known truth, and the misses."""
    return calibration_results(conn, project_id=project_id)


def listing(conn: Connection, *, project_id: int) -> list[dict[str, Any]]:
    return probes.listing(conn, project_id=project_id)


def truths(conn: Connection, project_id: int) -> dict[str, bool]:
    """Calibration versions of the project: rationale id -> known sound (True) or defective (False)."""
    return probes.truths(conn, project_id=project_id)


def record_result(conn: Connection, *, project_id: int, item_id: str, rationale_id: str, actor: str) -> None:
    """After a calibration review: an event for the audit trail (nothing else moves)."""
    expect = probes.expectation(conn, item_id=item_id)
    if expect is None:
        return
    add_event(conn, project_id=project_id, item_id=item_id, kind="calibration.reviewed", actor=actor,
              detail={"rationale_id": rationale_id, "expect": expect})
