"""The privacy gate: before every LLM request (draft, regeneration, judge) whose endpoint is in scope,
the text the request carries about the item is scanned (privacy/scan.py), and

* `[privacy] gate = "block"`: an item with findings moves to `held` with its findings (type, span, score)
  in the event; nothing about it is sent. An admin then releases it (the findings released are not held
  again; its request goes out), edits its text (a new content, the old one kept in `item_revisions`; it
  is scanned again), or excludes it. Every action is one transaction with an event naming who and why.
* `gate = "flag"`: the request is sent and the findings are recorded (a `flagged` row and an event).
* `gate = "off"`: no scan.

`[privacy] scope = "remote"` (the default) scans only requests to an endpoint not on this machine: the
embedded model, the in-process fake and a base URL whose host is loopback (localhost, 127.0.0.0/8, ::1)
are local; every other host is remote, even one on the local network. `scope = "all"` scans every request.

What is scanned is what the request carries about the item, segment by segment, so a finding names
where it is: the question, each option, the gold answer's text, the context, the bank's explanation when
drafts use it, and — for a regeneration — the previous version, reviewers' comments, step notes and the
failed checks; for the judge, the rationale. The prompt templates themselves are ours and carry nothing.

The runner (stages/runner.py) and the screen stage (stages/screen.py) call `decide` for each request
and `hold` / `flag` in the transaction that claimed or routes the item.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from clinreason.config import PrivacyConfig, ProjectConfig
from clinreason.domain.lifecycle import RESUME_AFTER_HOLD, ItemState
from clinreason.domain.records import DecisionKind, Item
from clinreason.privacy.scan import Finding, Scanner, get_scanner, text_digest
from clinreason.store import items as item_store
from clinreason.store import privacy as holds
from clinreason.store.decisions import add_decision, add_event

DRAFT, REGENERATE, JUDGE = "draft", "regenerate", "judge"
SEND, HOLD, FLAG = "send", "hold", "flag"


class PrivacyError(ValueError):
    """An admin action the gate cannot carry out; the message says why."""


# --- where a request goes ---------------------------------------------------------------------------

def endpoint_label(backend: str, base_url: str | None) -> str:
    """The endpoint a request goes to, as a record shows it: `embedded`, `fake`, or scheme://host[:port]
    (never a path, a user name or a password)."""
    kind = backend if backend != "auto" else ("openai" if base_url else "local")
    if kind == "local":
        return "embedded"
    if kind == "fake":
        return "fake (in process)"
    parts = urlsplit(base_url or "")
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or 'http'}://{host}" + (f":{parts.port}" if parts.port else "")


def endpoint_is_local(backend: str, base_url: str | None) -> bool:
    """Whether requests stay on this machine: the embedded model, the in-process fake, or a base URL whose
    host is loopback. A host name other than localhost is remote (it is not resolved: the safe side)."""
    kind = backend if backend != "auto" else ("openai" if base_url else "local")
    if kind in ("local", "fake"):
        return True
    host = (urlsplit(base_url or "").hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@dataclass(frozen=True)
class GatePolicy:
    """The gate for one kind of request: whether it scans, what it does with findings, where it goes."""

    gate: str
    scope: str
    endpoint: str
    local: bool
    min_score: float = 0.5
    ner_models: tuple[str, ...] = ()
    ignore: frozenset[str] = frozenset()

    @property
    def scanning(self) -> bool:
        return self.gate != "off" and (self.scope == "all" or not self.local)


def policy_for(pc: ProjectConfig, *, judge: bool = False) -> GatePolicy:
    """The gate for drafting and regeneration (the project's LLM) or for the judge, from the settings the
    backends are built from (app.llm_backend): `[llm] backend/base_url`, `[screen] judge_backend/judge_base_url`."""
    if judge:
        backend, base_url = pc.screen.judge_backend, pc.screen.judge_base_url or pc.llm.base_url
    else:
        backend, base_url = pc.llm.backend, pc.llm.base_url
    p: PrivacyConfig = pc.privacy
    return GatePolicy(gate=p.gate, scope=p.scope, endpoint=endpoint_label(backend, base_url),
                      local=endpoint_is_local(backend, base_url), min_score=p.min_score, ner_models=p.ner_models,
                      ignore=frozenset(p.ignore))


def scanner_for(policy: GatePolicy) -> Scanner | None:
    """The process's scanner for this policy (built on first use: it imports presidio), or None when the
    policy scans nothing."""
    if not policy.scanning:
        return None
    return get_scanner(ner_models=policy.ner_models, min_score=policy.min_score)


# --- what a request carries -----------------------------------------------------------------------------

def item_segments(item: Item, *, include_reference: bool) -> list[tuple[str, str]]:
    """The item's text as the draft and regeneration prompts carry it (stages/generate.prompt_view)."""
    segments = [("question", item.question)]
    segments += [(f"option {label}", text) for label, text in item.options]
    if item.answer_text:
        segments.append(("answer", item.answer_text))
    if item.context:
        segments.append(("context", item.context))
    if include_reference and item.reference_explanation:
        segments.append(("reference explanation", item.reference_explanation))
    return segments


def regeneration_segments(feedback: dict[str, Any]) -> list[tuple[str, str]]:
    """What a regeneration prompt adds (stages/refine.regeneration_feedback): the previous version, the
    reviewers' comments, their notes and corrections on steps, and the failed checks."""
    segments = [("previous rationale", str((feedback.get("previous") or {}).get("text") or ""))]
    segments += [(f"comment {n}", str(c.get("text") or "")) for n, c in enumerate(feedback.get("comments") or [], 1)]
    for step in feedback.get("marked_steps") or []:
        for mark in step.get("marks") or []:
            for part in ("note", "correction"):
                if mark.get(part):
                    segments.append((f"step {step.get('number')} {part}", str(mark[part])))
    segments += [(f"check {c.get('name')}", str(c.get("detail") or "")) for c in feedback.get("failed_checks") or []]
    return [(name, text) for name, text in segments if text.strip()]


def judge_segments(item: Item, rationale_text: str) -> list[tuple[str, str]]:
    """What the judge prompt carries: the item (no context, no reference) and the rationale."""
    segments = [("question", item.question)] + [(f"option {label}", text) for label, text in item.options]
    if item.answer_text:
        segments.append(("answer", item.answer_text))
    return segments + [("rationale", rationale_text)]


# --- the decision -------------------------------------------------------------------------------------------

@dataclass
class Decision:
    action: str  # send | hold | flag
    findings: list[Finding] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [f.to_record() for f in self.findings]


def decide(policy: GatePolicy, scanner: Scanner | None, segments: Sequence[tuple[str, str]], *, language: str,
           released: set[str] | frozenset[str] = frozenset()) -> Decision:
    """Scan `segments`; findings of an ignored type, or that an admin released for this item, do not count."""
    if scanner is None or not policy.scanning:
        return Decision(SEND)
    found = [f for f in scanner.scan(segments, language=language)
             if f.entity_type not in policy.ignore and f.digest not in released]
    if not found:
        return Decision(SEND)
    return Decision(HOLD if policy.gate == "block" else FLAG, found)


def summary(findings: list[dict[str, Any]]) -> str:
    """'2 × PHONE_NUMBER, 1 × DATE' (what the CLI prints)."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[str(f.get("type"))] = counts.get(str(f.get("type")), 0) + 1
    return ", ".join(f"{n} × {t}" for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def hold(conn: Connection, *, item: Item, kind: str, expected: ItemState, decision: Decision, policy: GatePolicy,
         actor: str) -> int:
    """Move the item from `expected` (where its request was to be made) to `held`, dropping its claim, with
    the findings in the event and a `held` row saying where it resumes. Returns the hold's id. Raises
    StaleStateError when the item moved meanwhile (nothing is written then: call it in a savepoint)."""
    findings = decision.records()
    resume = RESUME_AFTER_HOLD[ItemState(expected)]
    hold_id = holds.add_hold(conn, project_id=item.project_id, item_id=item.id, kind=kind, gate=policy.gate,
                             status=holds.HELD, resume_state=resume.value, endpoint=policy.endpoint,
                             findings=findings, actor=actor)
    item_store.transition_item(conn, item_id=item.id, expected=expected, target=ItemState.HELD, actor=actor,
                               detail={"privacy": {"hold_id": hold_id, "request": kind, "endpoint": policy.endpoint,
                                                   "findings": findings}},
                               claimed_by=None, claimed_until=None)
    return hold_id


def flag(conn: Connection, *, item: Item, kind: str, decision: Decision, policy: GatePolicy, actor: str) -> int:
    """Record that a request with findings is being sent (`gate = "flag"`): a `flagged` row and an event."""
    findings = decision.records()
    hold_id = holds.add_hold(conn, project_id=item.project_id, item_id=item.id, kind=kind, gate=policy.gate,
                             status=holds.FLAGGED, resume_state=None, endpoint=policy.endpoint, findings=findings,
                             actor=actor)
    add_event(conn, project_id=item.project_id, item_id=item.id, kind="privacy.flagged", actor=actor,
              detail={"hold_id": hold_id, "request": kind, "endpoint": policy.endpoint, "findings": findings})
    return hold_id


# --- an admin's actions on a held item ---------------------------------------------------------------------------

def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise PrivacyError("a reason is required: say why (it is recorded with your name in the item's events)")
    if len(reason) > 2000:
        raise PrivacyError(f"the reason is {len(reason)} characters long: at most 2000")
    return reason


def _held(conn: Connection, project_id: int, item_id: str) -> tuple[Item, dict[str, Any]]:
    item = item_store.lock_item(conn, item_id=item_id)
    if item is None or item.project_id != project_id:
        raise PrivacyError(f"no item {item_id} in this project")
    if item.state != ItemState.HELD.value:
        raise PrivacyError(f"item {item_id} is '{item.state}', not held by the privacy gate "
                           "(see `clinreason privacy list`)")
    found = holds.open_hold(conn, project_id=project_id, item_id=item_id)
    if found is None:
        raise PrivacyError(f"item {item_id} is held but has no open hold record")
    return item, found


def _resolve(conn: Connection, found: dict[str, Any], status: str, actor: str, reason: str) -> None:
    if not holds.resolve_hold(conn, hold_id=found["id"], status=status, actor=actor, reason=reason):
        raise PrivacyError(f"hold {found['id']} was resolved by someone else meanwhile")


def release(conn: Connection, *, project_id: int, item_id: str, actor: str, reason: str) -> dict[str, Any]:
    """Let a held item through: its request goes out at the next run, and the findings released here are not
    held again for this item (new ones are)."""
    reason = _reason(reason)
    item, found = _held(conn, project_id, item_id)
    _resolve(conn, found, holds.RELEASED, actor, reason)
    resume = ItemState(found["resume_state"])
    item_store.transition_item(conn, item_id=item.id, expected=ItemState.HELD, target=resume, actor=actor,
                               detail={"privacy": {"action": "released", "hold_id": found["id"], "because": reason,
                                                   "released": [f["digest"] for f in found["findings"]]}})
    return {"item_id": item.id, "hold_id": found["id"], "state": resume.value, "findings": len(found["findings"])}


def exclude(conn: Connection, *, project_id: int, item_id: str, actor: str, reason: str) -> dict[str, Any]:
    """Exclude a held item from the dataset (a final decision, with the reason)."""
    reason = _reason(reason)
    item, found = _held(conn, project_id, item_id)
    _resolve(conn, found, holds.EXCLUDED, actor, reason)
    item_store.transition_item(conn, item_id=item.id, expected=ItemState.HELD, target=ItemState.EXCLUDED, actor=actor,
                               detail={"privacy": {"action": "excluded", "hold_id": found["id"], "because": reason}})
    add_decision(conn, item_id=item.id, kind=DecisionKind.EXCLUDED.value, rationale_id=None, decided_by=actor,
                 reason=f"privacy: {reason}")
    return {"item_id": item.id, "hold_id": found["id"], "state": ItemState.EXCLUDED.value}


def redacted(item: Item, findings: list[dict[str, Any]]) -> dict[str, Any]:
    """The item's text with every finding in its own segments replaced by `[TYPE]`: the edit `--redact`
    makes. Refused when a finding is not where it was found (the item changed since) or lies outside the
    item's own text (in a rationale or a comment: an edit of the item cannot remove it)."""
    texts: dict[str, str] = {name: text for name, text in item_segments(item, include_reference=True)}
    by_segment: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        name = str(f["segment"])
        if name not in texts:
            raise PrivacyError(f"a {f['type']} was found in the {name}, which is not the item's own text: "
                               "release or exclude the item instead")
        piece = texts[name][int(f["start"]):int(f["end"])]
        if text_digest(str(f["type"]), piece) != f["digest"]:
            raise PrivacyError(f"the item's {name} changed since it was held: edit it by hand")
        by_segment.setdefault(name, []).append(f)
    for name, found in by_segment.items():
        text = texts[name]
        cut = 0
        out = []
        for f in sorted(found, key=lambda f: (int(f["start"]), -int(f["end"]))):
            start, end = int(f["start"]), int(f["end"])
            if start < cut:
                continue  # inside a span already masked
            out += [text[cut:start], f"[{f['type']}]"]
            cut = end
        texts[name] = "".join(out) + text[cut:]
    changes: dict[str, Any] = {}
    if texts["question"] != item.question:
        changes["question"] = texts["question"]
    options = [[label, texts[f"option {label}"]] for label, _ in item.options]
    if options != [[label, text] for label, text in item.options]:
        changes["options"] = options
    for name, column in (("answer", "answer_text"), ("context", "context"),
                         ("reference explanation", "reference_explanation")):
        if name in texts and texts[name] != getattr(item, column):
            changes[column] = texts[name]
    return changes


_BLANK = re.compile(r"^\s*$")


def edit(conn: Connection, *, project_id: int, item_id: str, actor: str, reason: str,
         changes: dict[str, Any] | None = None, redact: bool = False) -> dict[str, Any]:
    """Rewrite a held item's text — `changes` (question, options {label: text} or [[label, text]], answer_text,
    context, reference_explanation), or with `redact` every finding masked as [TYPE] — keeping the old content
    as a revision; the item then resumes where it was held and is scanned again before its request goes out."""
    reason = _reason(reason)
    item, found = _held(conn, project_id, item_id)
    new: dict[str, Any] = dict(redacted(item, found["findings"])) if redact else {}
    for key, value in (changes or {}).items():
        if key == "options":
            value = _options(item, value)
        elif key not in item_store.EDITABLE_CONTENT:
            raise PrivacyError(f"'{key}' cannot be edited (editable: {', '.join(item_store.EDITABLE_CONTENT)})")
        elif key == "question" and (not isinstance(value, str) or _BLANK.match(value)):
            raise PrivacyError("the question cannot be empty")
        elif value is not None and not isinstance(value, str):
            raise PrivacyError(f"'{key}' must be text")
        new[key] = value
    if not new:
        raise PrivacyError("nothing to change: give the new text (or --redact to mask the findings)")
    if all(getattr(item, k) == v or (k == "options" and v == [list(o) for o in item.options]) for k, v in new.items()):
        raise PrivacyError("the new text is the same as the held one")
    revision = item_store.replace_content(conn, item_id=item.id, actor=actor, reason=reason, changes=new)
    _resolve(conn, found, holds.EDITED, actor, reason)
    add_event(conn, project_id=project_id, item_id=item.id, kind="item.content_edited", actor=actor,
              detail={"revision": revision, "fields": sorted(new), "because": reason, "redacted": redact,
                      "hold_id": found["id"]})
    resume = ItemState(found["resume_state"])
    item_store.transition_item(conn, item_id=item.id, expected=ItemState.HELD, target=resume, actor=actor,
                               detail={"privacy": {"action": "edited", "hold_id": found["id"], "because": reason,
                                                   "revision": revision}})
    return {"item_id": item.id, "hold_id": found["id"], "state": resume.value, "revision": revision,
            "fields": sorted(new)}


def _options(item: Item, value: Any) -> list[list[str]]:
    """New option texts under the item's own labels (a mapping label -> text, or [[label, text], ...]; the
    labels not given keep their text)."""
    given = dict(value) if isinstance(value, dict) else {str(p[0]): p[1] for p in value or []}
    labels = [label for label, _ in item.options]
    unknown = [label for label in given if label not in labels]
    if unknown:
        raise PrivacyError(f"no option {', '.join(unknown)} (the item's options: {', '.join(labels) or 'none'})")
    out = []
    for label, text in item.options:
        new = given.get(label, text)
        if not isinstance(new, str) or _BLANK.match(new):
            raise PrivacyError(f"option {label} cannot be empty")
        out.append([label, new])
    return out


# --- what the admin pages and the CLI show -------------------------------------------------------------------------

def held_items(conn: Connection, *, project_id: int) -> list[dict[str, Any]]:
    """Every open hold: the item, the request held, where it was to go, and its findings."""
    return [{**h, "summary": summary(h["findings"])} for h in holds.project_holds(conn, project_id=project_id)]


def hold_view(conn: Connection, *, project_id: int, item_id: str) -> dict[str, Any]:
    """An item's privacy story for a page: its current segments, each cut into plain and found pieces (the
    open hold's findings highlighted where they still are), and every hold and flag it had."""
    item = item_store.get_item(conn, project_id=project_id, item_id=item_id)
    if item is None:
        raise PrivacyError(f"no item {item_id} in this project")
    records = holds.item_holds(conn, item_id=item_id)
    current = next((h for h in reversed(records) if h["status"] == holds.HELD), None)
    findings = current["findings"] if current else []
    segments = []
    for name, text in item_segments(item, include_reference=True):
        mine = sorted((f for f in findings if f["segment"] == name), key=lambda f: int(f["start"]))
        pieces, cut = [], 0
        for f in mine:
            start, end = int(f["start"]), int(f["end"])
            if start < cut or text_digest(str(f["type"]), text[start:end]) != f["digest"]:
                continue
            pieces += [{"text": text[cut:start]}, {"text": text[start:end], "finding": f}]
            cut = end
        pieces.append({"text": text[cut:]})
        segments.append({"name": name, "pieces": [p for p in pieces if p["text"]]})
    elsewhere = [f for f in findings if f["segment"] not in {s["name"] for s in segments}]
    return {"item": item, "hold": current, "segments": segments, "elsewhere": elsewhere, "records": records,
            "revisions": item_store.content_revisions(conn, item_id=item_id)}


# --- a dry run: what the gate would hold, without sending or storing anything -------------------------------

Request = tuple[str, str, list[tuple[str, str]]]  # (where it is, language, segments)


def bank_requests(path: Path, fmt: str = "auto", *, include_reference: bool = False,
                  split: str = "test") -> list[Request]:
    """The draft request of every distinct valid question of a bank file or folder (read as `import` reads
    it; a question that appears twice is counted once), named `file:record`."""
    from clinreason.domain.records import Item as StoredItem
    from clinreason.stages.ingest import ImportAborted, plan_files
    from clinreason.stages.ingest_formats import read_items
    from clinreason.stages.ingest_readers import FileFormatError, RecordError

    try:
        files, _ = plan_files(path, fmt, split=split)
    except ImportAborted as exc:
        raise PrivacyError(str(exc)) from None
    seen: set[str] = set()
    out: list[Request] = []
    for file, chosen in files:
        try:
            for entry in read_items(file, chosen):
                if isinstance(entry, RecordError):
                    continue
                raw, parsed = entry
                digest = parsed.compute_hash()
                if digest in seen:
                    continue
                seen.add(digest)
                item = StoredItem(id=f"{file.name}:{raw.number}", project_id=0, question=parsed.question,
                                  options=list(parsed.options.items()), answer_labels=parsed.answer_labels,
                                  language=parsed.language, state="imported", answer_text=parsed.answer_text,
                                  context=parsed.context, reference_explanation=parsed.reference_explanation)
                out.append((item.id, item.language, item_segments(item, include_reference=include_reference)))
        except FileFormatError as exc:
            raise PrivacyError(f"{file}: {exc}") from None
    return out


def dry_run(requests: Sequence[Request], scanner: Scanner, *, ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What `gate = "block"` would do with these requests: how many items it would hold, why, per type."""
    policy = GatePolicy(gate="block", scope="all", endpoint="", local=False, ignore=ignore)
    held: list[dict[str, Any]] = []
    by_type: dict[str, int] = {}
    for where, language, segments in requests:
        decision = decide(policy, scanner, segments, language=language)
        if decision.action == HOLD:
            for f in decision.findings:
                by_type[f.entity_type] = by_type.get(f.entity_type, 0) + 1
            held.append({"item": where, "findings": decision.records(),
                         "found": [{"type": f.entity_type, "segment": f.segment, "text": f.text, "why": f.why}
                                   for f in decision.findings]})
    n = len(requests)
    return {"items": n, "would_hold": len(held), "rate": round(len(held) / n, 5) if n else 0.0,
            "by_type": dict(sorted(by_type.items())), "held": held, "notes": list(scanner.notes)}
