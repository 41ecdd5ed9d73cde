"""Writing what an annotation tool's records carry besides the question: drafted versions, expert reviews
and the reviewers behind them, inside the import's one transaction.

Versions are born through the store's one birth (`store.rationales.add_versions`): numbered as the
record says (a clinreason export carries the number, parent, origin, steps and final answer) or as the
item's next. Reviews go through `store.reviews.add_review`, each on the record's last version, under the
project's current rubric version. Every annotator becomes a reviewer account named `<their id>@<tool>`
(a clinreason export's anonymised id, `R-1a2b3c4d@argilla`), created **inactive** with a password hash
that matches no password, so an imported name can never sign in until an admin enables it and sets a
password. An item that arrives with versions moves imported → generating → screening, where the screen
stage checks its latest version like any draft before the review queue; its decision (if it had one in
the source) is not re-made. An item that was in the project before the import keeps what it has: the
drafts and reviews of its records are not added again (a re-import adds nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from clinreason.domain.items import Item as ImportedItem
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.records import Item, Review
from clinreason.stages.ingest_annotated import Annotations, ImportedDraft
from clinreason.stages.ingest_readers import RawRecord
from clinreason.store import accounts, rationales, reviews
from clinreason.store.common import new_id
from clinreason.store.decisions import add_event, add_events
from clinreason.store.items import transition_items

#: stored as the password hash of an imported reviewer: no password hashes to it (argon2 refuses to parse it)
UNUSABLE_PASSWORD_HASH = "!imported: no password; an admin enables the account and sets one"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._@-]")


class AnnotationConflict(ValueError):
    """Two records say contradictory things (the same version number twice, one reviewer twice)."""


def reviewer_username(name: str, tool: str) -> str:
    """The account an annotator becomes: their id with `@<tool>`, in the characters a user name allows."""
    suffix = f"@{tool}"
    base = _NAME_CHARS.sub("_", name.strip()) or "annotator"
    return base[: 100 - len(suffix)] + suffix


@dataclass
class AnnotationTally:
    versions: int = 0
    reviews: int = 0
    reviewers_created: int = 0
    #: records whose item was in the project before this import: their drafts and reviews are not added again
    skipped_records: int = 0
    verdicts_derived: int = 0
    ignored_questions: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {"versions_added": self.versions, "reviews_added": self.reviews,
                "reviewers_created": self.reviewers_created, "annotations_skipped": self.skipped_records,
                "verdicts_derived": self.verdicts_derived, "ignored_questions": sorted(self.ignored_questions)}


class AnnotationWriter:
    """One import's writer of drafts and reviews; it remembers across batches which items this import
    added, which accounts it resolved and which version numbers it stored."""

    def __init__(self, *, project_id: int, tool: str, rubric_version: int, actor: str, dry_run: bool,
                 tally: AnnotationTally):
        self.project_id, self.tool, self.rubric_version, self.actor = project_id, tool, rubric_version, actor
        self.dry_run, self.tally = dry_run, tally
        self.added: dict[str, str] = {}  # item id -> the state it was stored in, for the items this import added
        self.accounts: dict[str, int] = {}
        self.versions: set[tuple[str, int]] = set()
        self.moved: set[str] = set()
        self._fake_ids = 0

    def write(self, conn: Connection, entries: list[tuple[RawRecord, ImportedItem]]) -> None:
        """The drafts and reviews of one batch of records (their items are stored already)."""
        to_move: list[str] = []
        events: list[dict[str, Any]] = []
        for raw, item in entries:
            notes = raw.annotations
            if not isinstance(notes, Annotations):
                continue
            self.tally.ignored_questions |= notes.ignored
            if not notes.drafts and not notes.reviews:
                continue
            if item.id not in self.added:
                self.tally.skipped_records += 1
                continue
            born = self._versions(conn, raw, item, notes.drafts)
            reviewed = born[-1][0] if born else None
            count = self._reviews(conn, raw, item, reviewed, notes) if reviewed is not None else 0
            if born and self.added[item.id] == ItemState.IMPORTED.value and item.id not in self.moved:
                to_move.append(item.id)
                self.moved.add(item.id)
            events.append({"project_id": self.project_id, "item_id": item.id, "kind": "item.annotations_imported",
                           "actor": self.actor,
                           "detail": {"tool": self.tool, "record": raw.number, "locator": raw.locator,
                                      "versions": [number for _, number in born],
                                      "reviews": count}})
        if self.dry_run:
            return
        add_events(conn, events)
        detail = {item_id: {"by": f"imported from {self.tool} with its drafted rationale"} for item_id in to_move}
        for expected, target in ((ItemState.IMPORTED, ItemState.GENERATING), (ItemState.GENERATING, ItemState.SCREENING)):
            if not transition_items(conn, project_id=self.project_id, item_ids=to_move, expected=expected,
                                    target=target, actor=self.actor, details=detail):
                raise AnnotationConflict("an imported item moved while the import was writing it")

    def _versions(self, conn: Connection, raw: RawRecord, item: ImportedItem, drafts: list[ImportedDraft]
                  ) -> list[tuple[str, int | None]]:
        """Store the record's drafts; returns (rationale id, number) of each (made up in a dry run)."""
        stored = Item(id=item.id, project_id=self.project_id, question=item.question,
                      options=list(item.options.items()), answer_labels=list(item.answer_labels),
                      language=item.language, state=item.state, answer_text=item.answer_text)
        new: list[rationales.NewVersion] = []
        for draft in drafts:
            if draft.version is not None:
                key = (item.id, draft.version)
                if key in self.versions:
                    raise AnnotationConflict(f"record {raw.number} ({raw.locator}): version {draft.version} of item "
                                             f"{item.id} is given twice in this import")
                self.versions.add(key)
            author = draft.author or f"import:{self.tool}"
            if draft.author_person:  # an expert's version: written by the reviewer account of that person
                self.account(conn, draft.author_person)
                author = f"user:{reviewer_username(draft.author_person, self.tool)}"
            parsed = None
            if draft.steps is not None and draft.final_answer is not None:
                parsed = {"steps": draft.steps, "final_answer": draft.final_answer, "parse_status": "ok"}
            new.append(rationales.NewVersion(
                item=stored, origin=draft.origin, author=author, text=draft.text, parsed=parsed,
                version=draft.version, parent_version=draft.parent_version, model=draft.model,
                params=dict(draft.params), prompt_hash=draft.prompt_hash, seed=draft.seed))
        self.tally.versions += len(new)
        if self.dry_run:
            return [(f"dry-run-{raw.number}-{k}", d.version) for k, d in enumerate(drafts)]
        try:
            born = rationales.add_versions(conn, list(new))
        except IntegrityError:
            raise AnnotationConflict(f"record {raw.number} ({raw.locator}): a version of item {item.id} with that "
                                     "number exists already") from None
        return [(v.id, v.version) for v in born]

    def _reviews(self, conn: Connection, raw: RawRecord, item: ImportedItem, rationale_id: str,
                 notes: Annotations) -> int:
        seen: set[int] = set()
        for r in notes.reviews:
            reviewer_id = self.account(conn, r.name)
            if reviewer_id in seen:
                raise AnnotationConflict(f"record {raw.number} ({raw.locator}): two annotators become the same "
                                         f"reviewer {reviewer_username(r.name, self.tool)}")
            seen.add(reviewer_id)
            self.tally.reviews += 1
            self.tally.verdicts_derived += r.verdict_derived
            if self.dry_run:
                continue
            reviews.add_review(conn, Review(
                id=new_id(), rationale_id=rationale_id, item_id=item.id, reviewer_id=reviewer_id, verdict=r.verdict,
                scores=dict(r.scores), comments=dict(r.comments), edited_text=r.edited_text, seconds_spent=r.seconds,
                rubric_version=self.rubric_version, steps=list(r.marks)))
        return len(notes.reviews)

    def account(self, conn: Connection, name: str) -> int:
        """The reviewer account of an annotator: an existing one of that name, or a new inactive one."""
        username = reviewer_username(name, self.tool)
        if username in self.accounts:
            return self.accounts[username]
        user = accounts.get_user(conn, username=username)
        if user is not None:
            uid = user.id
        elif self.dry_run:
            self._fake_ids -= 1
            uid = self._fake_ids
            self.tally.reviewers_created += 1
        else:
            uid = accounts.add_user(conn, username=username, role="reviewer", specialties=[],
                                    password_hash=UNUSABLE_PASSWORD_HASH, active=False)
            add_event(conn, project_id=self.project_id, kind="user.created", actor=self.actor,
                      after={"username": username, "role": "reviewer", "specialties": [], "active": False},
                      detail={"imported_from": self.tool})
            self.tally.reviewers_created += 1
        self.accounts[username] = uid
        return uid
