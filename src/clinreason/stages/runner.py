"""The one generic async runner behind every LLM stage (drafting, guided regeneration).

It claims items (a lease in the database), builds each request with the stage's pure function,
calls the model with bounded concurrency, and stores every result — rationale + state change +
cache entry — in one transaction per batch.

A concurrency slot is held until the response is written to the run's local journal
(store/journal.py), not until it is in the database: the batched database write then runs while the
slot already carries the next request. After a crash the next run on the same host stores what the
journal holds before it claims anything, so at most `concurrency` paid requests per worker — those
really in flight — are sent again; everything received is never asked for twice (the item has moved
on, and the idempotency key `<item>:v<version>` is unique, which also makes storing a journal entry
twice harmless). A worker on another host that takes over a dead one's claims cannot read its journal:
it also asks again for what had arrived but was not yet stored (one batch window's worth at most).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from clinreason.config import ProjectConfig
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.rationale_text import rationale_schema
from clinreason.domain.records import Item, Origin, RationaleVersion
from clinreason.llm.base import ChatMessage, Completion, LLMBackend, LLMError, LLMParams
from clinreason.stages import privacy
from clinreason.stages.generate import build_draft_messages, parse_completion, request_hash
from clinreason.stages.refine import build_regeneration_messages, regeneration_feedback
from clinreason.store import db, rationales, work
from clinreason.store import privacy as privacy_store
from clinreason.store.common import StaleStateError
from clinreason.store.items import items_by_id, transition_item, transition_items
from clinreason.store.journal import NoJournal, ResponseJournal, open_journal, read_entries
from clinreason.store.projects import latest_rubric
from clinreason.store.rationales import NewVersion, PreparedVersion

_T = TypeVar("_T")
DRAFT, REGENERATE = "draft", "regenerate"
#: How long the writer lets results gather before storing them while requests are in flight. No slot
#: waits for the database, so a longer wait costs nothing but a little memory; fewer, larger
#: transactions cost less CPU per result, and that CPU is what the event loop shares with the writer.
_BATCH_WINDOW_SECONDS = 0.05
_SOURCE_STATE = {DRAFT: ItemState.IMPORTED, REGENERATE: ItemState.REGENERATING}
_WORKING_STATE = {DRAFT: ItemState.GENERATING, REGENERATE: ItemState.REGENERATING}


@dataclass
class Job:
    item: Item
    kind: str
    version: int
    messages: list[ChatMessage]
    prompt_hash: str
    params: LLMParams
    request_hash: str
    parent_version: int | None
    cached: dict[str, Any] | None = None
    #: what the request constrained: "json" (a schema), "answer" (the option labels) or None; recorded
    #: with the rationale, and kept in the journal, which does not keep the parameters themselves
    structured: str | None = None


@dataclass
class Outcome:
    job: Job
    completion: Completion | None = None
    error: str | None = None
    cached: bool = False


@dataclass
class RunReport:
    claimed: int = 0
    stored: int = 0
    failed: int = 0
    cached: int = 0
    requests: int = 0
    skipped: int = 0  # results another worker had already stored
    held: int = 0  # items the privacy gate held: nothing about them was sent
    flagged: int = 0  # requests sent with privacy findings recorded (`[privacy] gate = "flag"`)
    recovered: int = 0  # results a dead run had received, stored from its journal before claiming
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    errors: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "stored": self.stored, "failed": self.failed, "cached": self.cached,
                "requests": self.requests, "skipped": self.skipped, "recovered": self.recovered,
                "held": self.held, "flagged": self.flagged,
                "wall_seconds": round(self.wall_seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                "errors": dict(self.errors)}


def _params(pc: ProjectConfig, item: Item, version: int, key: str, structured: str | None) -> LLMParams:
    labels = tuple(item.option_labels)
    schema = rationale_schema(item.options, max_steps=pc.screen.max_steps) if structured == "json" else None
    choices = labels if structured == "answer" and labels else None
    return LLMParams(temperature=pc.llm.temperature, max_tokens=pc.llm.max_tokens, seed=pc.llm.seed + version - 1,
                     json_schema=schema, idempotency_key=key, answer_choices=choices)


def _structured_of(params: LLMParams) -> str | None:
    """What the request really constrained (an open question gets no answer grammar)."""
    return "json" if params.json_schema else ("answer" if params.answer_choices else None)


def _build_jobs(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, kind: str, worker: str, limit: int,
                model_id: str, structured: str | None, report: RunReport | None = None) -> list[Job]:
    """Claim up to `limit` items and turn each into a request (one transaction). The privacy gate sees
    every request that is to be sent (not those served from the cache) before it leaves the transaction:
    a held item is moved to `held` there and gets no job."""
    policy = privacy.policy_for(pc)
    scanner = privacy.scanner_for(policy)  # built (presidio imported) before the transaction, once per process
    with db.transaction(engine) as conn:
        claim_to = ItemState.GENERATING if kind == DRAFT else None
        claimed = work.claim(conn, project_id=project["id"], state=_SOURCE_STATE[kind], worker=worker, limit=limit,
                             lease_seconds=pc.generate.claim_seconds, claim_to=claim_to)
        rubric = latest_rubric(conn, project_id=project["id"]) if kind == REGENERATE and claimed else None
        jobs: list[Job] = []
        scanned: dict[str, list[tuple[str, str]]] = {}
        for item in claimed:
            if kind == DRAFT:
                messages, phash = build_draft_messages(item, mode=pc.generate.mode,
                                                       use_reference=pc.generate.use_reference_explanation)
                parent = None
                scanned[item.id] = privacy.item_segments(item, include_reference=pc.generate.use_reference_explanation)
            else:
                assert rubric is not None  # read above for a regeneration batch
                feedback = regeneration_feedback(conn, item_id=item.id, rubric_body=rubric,
                                                 blocking=pc.screen.blocking, language=item.language)
                messages, phash = build_regeneration_messages(item, feedback, mode=pc.generate.mode)
                parent = feedback["previous"]["version"]
                scanned[item.id] = (privacy.item_segments(item, include_reference=False)
                                    + privacy.regeneration_segments(feedback))
            version = item.next_version
            params = _params(pc, item, version, f"{item.id}:v{version}", structured)
            jobs.append(Job(item=item, kind=kind, version=version, messages=messages, prompt_hash=phash,
                            params=params, request_hash=request_hash(model_id, messages, params),
                            parent_version=parent, structured=_structured_of(params)))
        if jobs:
            hits = rationales.cached_responses(conn, request_hashes=[j.request_hash for j in jobs])
            for job in jobs:
                job.cached = hits.get(job.request_hash)
        if scanner is not None and jobs:
            jobs = _privacy_gate(conn, jobs, scanned, policy, scanner, worker, report)
    return jobs


def _privacy_gate(conn: Connection, jobs: list[Job], scanned: dict[str, list[tuple[str, str]]],
                  policy: privacy.GatePolicy, scanner: Any, worker: str, report: RunReport | None) -> list[Job]:
    """The jobs whose requests may go out; the others' items are held (or, with `gate = "flag"`, sent with
    their findings recorded). A cached answer sends nothing, so it is not scanned."""
    released = privacy_store.released_digests(conn, item_ids=[j.item.id for j in jobs if j.cached is None])
    keep: list[Job] = []
    for job in jobs:
        if job.cached is not None:
            keep.append(job)
            continue
        decision = privacy.decide(policy, scanner, scanned[job.item.id], language=job.item.language,
                                  released=released.get(job.item.id, set()))
        if decision.action == privacy.HOLD:
            try:
                with conn.begin_nested():
                    privacy.hold(conn, item=job.item, kind=job.kind, expected=_WORKING_STATE[job.kind],
                                 decision=decision, policy=policy, actor=f"worker:{worker}")
            except StaleStateError:
                continue  # moved by someone else meanwhile: not ours to send either
            if report is not None:
                report.held += 1
            continue
        if decision.action == privacy.FLAG:
            privacy.flag(conn, item=job.item, kind=job.kind, decision=decision, policy=policy,
                         actor=f"worker:{worker}")
            if report is not None:
                report.flagged += 1
        keep.append(job)
    return keep


def _new_version(out: Outcome) -> NewVersion:
    """The rationale version a completion makes (CPU only: parsed before taking the write turn)."""
    job, completion = out.job, out.completion
    assert completion is not None
    parsed = parse_completion(completion, job.item)
    tokens = (0, 0, 0.0) if out.cached else (parsed["prompt_tokens"], parsed["completion_tokens"], parsed["cost"])
    p = job.params
    return NewVersion(
        item=job.item, origin=Origin.GENERATED if job.kind == DRAFT else Origin.REGENERATED,
        author=f"model:{parsed['model']}", text=parsed["text"], parsed=parsed, version=job.version,
        parent_version=job.parent_version, model=parsed["model"],
        params={"temperature": p.temperature, "max_tokens": p.max_tokens, "top_p": p.top_p, "seed": p.seed,
                "kind": job.kind, "structured": job.structured, "cached": out.cached,
                "attempts": completion.attempts, "request_hash": job.request_hash},
        prompt_hash=job.prompt_hash, seed=p.seed, idempotency_key=p.idempotency_key,
        raw_output=parsed["raw_output"], reasoning=parsed["reasoning"], prompt_tokens=tokens[0],
        completion_tokens=tokens[1], cost=tokens[2], latency_ms=parsed["latency_ms"])


def _cache_row(out: Outcome) -> dict[str, Any]:
    c = out.completion
    assert c is not None
    return {"request_hash": out.job.request_hash, "model": c.model or "",
            "response": {"text": c.text, "reasoning": c.reasoning, "model": c.model,
                         "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}}


_Prepared = tuple[Outcome, PreparedVersion]


def _prepare(outcomes: list[Outcome]) -> list[_Prepared]:
    """Parse every completion into its new version (CPU only: done before taking the write turn)."""
    return [(out, rationales.prepare(_new_version(out))) for out in outcomes if out.completion is not None]


def _store_drafts(conn: Connection, *, project_id: int, prepared: list[_Prepared], worker: str) -> None:
    """Rationale versions, cache entries and the moves to `screening` for a group of results, in bulk.
    Raises StaleStateError or IntegrityError if any of them lost a race; the caller rolls the group back."""
    if not prepared:
        return
    born: list[RationaleVersion] = rationales.add_versions(conn, [new for _, new in prepared])
    fresh = {out.job.request_hash: out for out, _ in prepared if not out.cached}
    if fresh:
        rationales.cache_responses(conn, [_cache_row(out) for out in fresh.values()])
    for kind in (DRAFT, REGENERATE):
        group = [(out, version) for (out, _), version in zip(prepared, born, strict=True) if out.job.kind == kind]
        if not group:
            continue
        details = {out.job.item.id: {"rationale_id": v.id, "version": v.version, "origin": v.origin,
                                     "parse_status": v.parse_status} for out, v in group}
        moved = transition_items(conn, project_id=project_id, item_ids=list(details),
                                 expected=_WORKING_STATE[kind], target=ItemState.SCREENING,
                                 actor=f"worker:{worker}", details=details, claimed_by=None, claimed_until=None)
        if not moved:
            raise StaleStateError("an item of the batch was moved by another worker")


def _persist(engine: Engine, *, project_id: int, outcomes: list[Outcome], worker: str, report: RunReport) -> None:
    """Store a batch of results: all in one transaction in the common case; when one of them lost a
    race (another worker stored it, or moved the item) that transaction is rolled back and the batch
    is stored item by item, each in its own savepoint, so only the loser is skipped."""
    prepared = _prepare(outcomes)
    failed = [o for o in outcomes if o.completion is None]
    try:
        with db.transaction(engine) as conn:
            _store_drafts(conn, project_id=project_id, prepared=prepared, worker=worker)
            _store_failures(conn, failed, worker, report)
        report.stored += len(prepared)
        report.cached += sum(out.cached for out, _ in prepared)
        return
    except (StaleStateError, IntegrityError):
        pass
    with db.transaction(engine) as conn:
        for entry in prepared:
            try:
                with conn.begin_nested():
                    _store_drafts(conn, project_id=project_id, prepared=[entry], worker=worker)
                report.stored += 1
                report.cached += int(entry[0].cached)
            except (StaleStateError, IntegrityError):
                report.skipped += 1
        _store_failures(conn, failed, worker, report)


def _store_failures(conn: Connection, failed: list[Outcome], worker: str, report: RunReport) -> None:
    for out in failed:
        try:
            with conn.begin_nested():
                transition_item(conn, item_id=out.job.item.id, expected=_WORKING_STATE[out.job.kind],
                                target=ItemState.FAILED, actor=f"worker:{worker}", detail={"error": out.error},
                                fail_reason=out.error, claimed_by=None, claimed_until=None)
            report.failed += 1
        except StaleStateError:
            report.skipped += 1


def use_structured_output(pc: ProjectConfig, backend: LLMBackend) -> str | None:
    """'json': ask for JSON-schema output (`[llm] structured = true`, for servers that support it);
    'answer': the embedded model, whose final answer is decoded under a grammar of the option labels;
    None: free text, parsed robustly."""
    if pc.llm.structured:
        return "json"
    if pc.llm.structured is None and "(embedded)" in backend.model_id:
        return "answer"
    return None


def _give_back(engine: Engine, item_id: str, worker: str) -> None:
    with db.transaction(engine) as conn:
        work.expire_claim(conn, item_id=item_id, worker=worker)


_COMPLETION_FIELDS = ("text", "model", "reasoning", "prompt_tokens", "completion_tokens", "latency_ms", "cost",
                      "attempts")


def _journal_entry(out: Outcome, project_id: int) -> dict[str, Any]:
    """What storing `out` needs beyond the item row itself — never the prompt, which is only needed to ask."""
    job, completion, p = out.job, out.completion, out.job.params
    return {
        "project_id": project_id, "kind": job.kind, "item_id": job.item.id, "version": job.version,
        "parent_version": job.parent_version, "prompt_hash": job.prompt_hash, "request_hash": job.request_hash,
        "structured": job.structured,
        "params": {"temperature": p.temperature, "max_tokens": p.max_tokens, "top_p": p.top_p, "seed": p.seed,
                   "idempotency_key": p.idempotency_key},
        "completion": None if completion is None else {f: getattr(completion, f) for f in _COMPLETION_FIELDS},
        "error": out.error,
    }


def _outcome_from_entry(entry: dict[str, Any], item: Item) -> Outcome:
    job = Job(item=item, kind=entry["kind"], version=entry["version"], messages=[], prompt_hash=entry["prompt_hash"],
              params=LLMParams(**entry["params"]), request_hash=entry["request_hash"],
              parent_version=entry["parent_version"], structured=entry["structured"])
    completion = entry["completion"]
    return Outcome(job, completion=None if completion is None else Completion(**completion), error=entry["error"])


def _outcomes_by_project(engine: Engine, entries: list[dict[str, Any]]) -> dict[int, list[Outcome]]:
    """Journal entries back into outcomes, grouped by project (one journal serves every project of the
    database). An entry whose item is gone (project deleted meanwhile) is dropped."""
    ids = list({entry["item_id"] for entry in entries})
    with engine.connect() as conn:
        found = items_by_id(conn, item_ids=ids)
    grouped: dict[int, list[Outcome]] = {}
    for entry in entries:
        if entry["item_id"] in found:
            grouped.setdefault(entry["project_id"], []).append(_outcome_from_entry(entry, found[entry["item_id"]]))
    return grouped


def recover_journals(engine: Engine, journal: ResponseJournal | NoJournal, *, worker: str) -> int:
    """Store what runs that died had received (their orphaned journal segments), so that it is not asked
    for again; returns how many results were stored. An entry already in the database (the run died
    between storing and deleting its segment) is skipped by the unique idempotency key."""
    recovered = 0
    for segment in journal.adopt_orphans():
        scratch = RunReport()
        for project_id, outcomes in _outcomes_by_project(engine, read_entries(segment)).items():
            _persist(engine, project_id=project_id, outcomes=outcomes, worker=worker, report=scratch)
        journal.discard([segment])
        recovered += scratch.stored + scratch.failed
    return recovered


def _start_run(engine: Engine, journal: ResponseJournal | NoJournal, *, project_id: int, worker: str) -> int:
    """Before the first claim: store what dead runs received, then free their remaining claims (items
    that were in flight or not yet asked), in that order so that no received item is claimed again."""
    recovered = recover_journals(engine, journal, worker=worker)
    with db.transaction(engine) as conn:
        work.expire_dead_local_claims(conn, project_id=project_id)
    return recovered


async def _answer(job: Job, backend: LLMBackend, report: RunReport) -> Outcome:
    """The job's completion: from the cache when an identical request was answered before, else asked."""
    if job.cached is not None:
        c = job.cached
        return Outcome(job, Completion(text=c["text"], model=c.get("model") or backend.model_id,
                                       reasoning=c.get("reasoning")), cached=True)
    report.requests += 1
    try:
        return Outcome(job, await backend.complete(job.messages, job.params))
    except LLMError as exc:
        report.errors[type(exc).__name__ if exc.status is None else f"http {exc.status}"] += 1
        return Outcome(job, error=f"LLM request failed: {exc}"[:1000])


class _StageRun:
    """The state one `run_llm_stage` call shares between its coroutines: the claim feeder, one task per
    job, and the batch writer."""

    def __init__(self, engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, backend: LLMBackend,
                 kind: str, limit: int | None, concurrency: int, worker: str, stop: asyncio.Event,
                 structured: str | None, on_progress: Callable[[RunReport], None] | None,
                 journal: ResponseJournal | NoJournal):
        self.engine, self.project, self.pc, self.backend, self.kind = engine, project, pc, backend, kind
        self.limit, self.concurrency, self.worker, self.stop = limit, concurrency, worker, stop
        self.structured, self.on_progress, self.journal = structured, on_progress, journal
        self.report = RunReport()
        self.slots = asyncio.Semaphore(concurrency)
        self.queue: asyncio.Queue[tuple[Outcome, asyncio.Future]] = asyncio.Queue()
        self.active: set[asyncio.Task] = set()
        self.unanswered = 0  # claimed jobs not yet answered: those waiting for a slot and those in flight
        self.progressed = asyncio.Event()  # set whenever a slot frees up
        self.all_answered = asyncio.Event()  # set while no claimed job waits for its answer

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_batches())
        try:
            self.report.recovered = await self._db("storing what dead runs received", _start_run, self.engine,
                                                   self.journal, project_id=self.project["id"], worker=self.worker)
            await self._feed()
            if self.active:
                await asyncio.gather(*self.active, return_exceptions=False)
        finally:
            for task in self.active:
                task.cancel()
            writer.cancel()
            self.journal.close()

    async def _feed(self) -> None:
        """Claim until nothing is left, `limit` is reached or `stop` is set, keeping a queue of claimed
        jobs behind the busy slots: claims come in chunks (few, cheap transactions) early enough that a
        slot that frees up never waits for one."""
        chunk = max(self.concurrency // 2, 1)
        while not self.stop.is_set():
            if self.unanswered > self.concurrency + chunk:
                await self._next_progress()
                continue
            room = chunk if self.limit is None else min(chunk, self.limit - self.report.claimed)
            if room <= 0:
                return
            if not await self._claim(room):
                if not self.unanswered:
                    return
                await self._next_progress()  # meanwhile a lease may run out, or items be imported

    async def _claim(self, room: int) -> int:
        held_before = self.report.held
        jobs = await self._db("claiming items", _build_jobs, self.engine, project=self.project, pc=self.pc,
                              kind=self.kind, worker=self.worker, limit=room, model_id=self.backend.model_id,
                              structured=self.structured, report=self.report)
        claimed = len(jobs) + self.report.held - held_before  # a held item was claimed, and is done with
        self.report.claimed += claimed
        self.unanswered += len(jobs)
        if jobs:
            self.all_answered.clear()
        for job in jobs:
            task = asyncio.create_task(self._process(job))
            self.active.add(task)
            task.add_done_callback(self.active.discard)
        await asyncio.sleep(0)  # let the new jobs send their requests before the next claim's thread runs
        return claimed

    async def _next_progress(self) -> None:
        await self.progressed.wait()
        self.progressed.clear()

    async def _process(self, job: Job) -> None:
        try:
            async with self.slots:
                if self.stop.is_set():  # stopping: hand the claim back untouched instead of starting a request
                    await self._db("handing a claim back", _give_back, self.engine, job.item.id, self.worker)
                    return
                stored = self._hand_over(await _answer(job, self.backend, self.report))
        finally:
            self._answered()
        await stored  # the slot is already free; this only lets a storage error reach the run

    def _answered(self) -> None:
        self.unanswered -= 1
        self.progressed.set()
        if not self.unanswered:
            self.all_answered.set()

    def _hand_over(self, outcome: Outcome) -> asyncio.Future:
        """Journal the response and queue it for the writer, with no await in between: every journal
        segment the writer seals then belongs to the batch it takes. Cached answers cost nothing to
        ask again and are not journaled."""
        if not outcome.cached:
            self.journal.append(_journal_entry(outcome, self.project["id"]))
        stored = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((outcome, stored))
        return stored

    async def _write_batches(self) -> None:
        while True:
            batch = await self._next_batch()
            segments = self.journal.seal()  # hold exactly this batch's journal entries
            try:
                await self._db("storing results", _persist, self.engine, project_id=self.project["id"],
                               outcomes=[outcome for outcome, _ in batch], worker=self.worker, report=self.report)
            except Exception as exc:  # stopped during an outage, or a bug: the segment stays for recovery
                _settle(batch, exc)
                continue
            self.journal.discard(segments)
            _settle(batch, None)
            if self.on_progress:
                self.on_progress(self.report)

    async def _db(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """`fn` on a thread; while the database is not answering (a restart, an outage), again with backoff:
        the run pauses — no new claims, received results wait in the journal, requests in flight finish —
        and carries on when it is back (`store.db.while_unavailable`; a stopping run gives up instead)."""
        return await db.while_unavailable(lambda: asyncio.to_thread(fn, *args, **kwargs), what=what, stop=self.stop)

    async def _next_batch(self) -> list[tuple[Outcome, asyncio.Future]]:
        """What arrived by the end of the batch window (or until nothing is in flight any more)."""
        batch = [await self.queue.get()]
        if self.unanswered:
            try:
                await asyncio.wait_for(self.all_answered.wait(), _BATCH_WINDOW_SECONDS)
            except TimeoutError:
                pass
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch


def _settle(batch: list[tuple[Outcome, asyncio.Future]], error: Exception | None) -> None:
    for _, stored in batch:
        if not stored.done():
            if error is None:
                stored.set_result(None)
            else:
                stored.set_exception(error)


async def run_llm_stage(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, backend: LLMBackend,
                        kind: str, limit: int | None = None, concurrency: int = 8, worker: str | None = None,
                        stop: asyncio.Event | None = None, structured: str | None = "auto",
                        on_progress: Callable[[RunReport], None] | None = None,
                        journal_dir: Path | None = None) -> RunReport:
    """Draft (or regenerate) until there is nothing left, `limit` items were claimed, or `stop` is set.
    `journal_dir` overrides where received responses wait for the database (see store/journal.py)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    run = _StageRun(engine, project=project, pc=pc, backend=backend, kind=kind, limit=limit, concurrency=concurrency,
                    worker=worker or work.worker_id(), stop=stop or asyncio.Event(),
                    structured=use_structured_output(pc, backend) if structured == "auto" else structured,
                    on_progress=on_progress, journal=open_journal(engine.url, journal_dir))
    try:
        await run.run()
    finally:
        run.report.wall_seconds = time.perf_counter() - started
        run.report.cpu_seconds = time.process_time() - cpu_started
    return run.report
