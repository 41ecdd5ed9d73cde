"""The one generic async runner behind every LLM stage (drafting, guided regeneration).

It claims items (a lease in the database), builds each request with the stage's pure function,
calls the model with bounded concurrency, and stores every result — rationale + state change +
cache entry — in one transaction per batch. A concurrency slot is held until the result is stored,
so after a crash at most `concurrency` paid requests per worker were in flight and are sent again;
everything stored is never asked for twice (the item has moved on, and the idempotency key
`<item>:v<version>` is unique).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from clinreason.config import ProjectConfig
from clinreason.domain.lifecycle import ItemState
from clinreason.domain.rationale_text import rationale_schema
from clinreason.llm.base import ChatMessage, Completion, LLMBackend, LLMError, LLMParams
from clinreason.stages.generate import build_draft_messages, parse_completion, request_hash
from clinreason.stages.refine import build_regeneration_messages, regeneration_feedback
from clinreason.store import repository as repo
from clinreason.store import work
from clinreason.store.tables import llm_cache, rationales

DRAFT, REGENERATE = "draft", "regenerate"
#: This process's claims and stores take turns here rather than inside SQLite: a writer that finds the
#: database locked sleeps in SQLite's busy handler for up to tens of milliseconds at a time, and every
#: concurrency slot waits with it.
_WRITE_TURN = threading.Lock()
_SOURCE_STATE = {DRAFT: ItemState.IMPORTED, REGENERATE: ItemState.REGENERATING}
_WORKING_STATE = {DRAFT: ItemState.GENERATING, REGENERATE: ItemState.REGENERATING}


@dataclass
class Job:
    item: dict[str, Any]
    kind: str
    version: int
    messages: list[ChatMessage]
    prompt_hash: str
    params: LLMParams
    request_hash: str
    parent_version: int | None
    cached: dict[str, Any] | None = None


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
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    errors: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "stored": self.stored, "failed": self.failed, "cached": self.cached,
                "requests": self.requests, "skipped": self.skipped, "wall_seconds": round(self.wall_seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3), "errors": dict(self.errors)}


def _params(pc: ProjectConfig, item: dict[str, Any], version: int, key: str, structured: str | None) -> LLMParams:
    labels = tuple(o[0] for o in item["options"])
    schema = rationale_schema(item["options"], max_steps=pc.screen.max_steps) if structured == "json" else None
    choices = labels if structured == "answer" and labels else None
    return LLMParams(temperature=pc.llm.temperature, max_tokens=pc.llm.max_tokens, seed=pc.llm.seed + version - 1,
                     json_schema=schema, idempotency_key=key, answer_choices=choices)


def _build_jobs(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, kind: str, worker: str, limit: int,
                model_id: str, structured: str | None) -> list[Job]:
    """Claim up to `limit` items and turn each into a request (one transaction)."""
    with _WRITE_TURN, engine.begin() as conn:
        claim_to = ItemState.GENERATING if kind == DRAFT else None
        rows = work.claim(conn, project_id=project["id"], state=_SOURCE_STATE[kind], worker=worker, limit=limit,
                          lease_seconds=pc.generate.claim_seconds, claim_to=claim_to)
        rubric = repo.latest_rubric(conn, project_id=project["id"]) if kind == REGENERATE and rows else None
        jobs: list[Job] = []
        for row in rows:
            if kind == DRAFT:
                messages, phash = build_draft_messages(row, mode=pc.generate.mode,
                                                       use_reference=pc.generate.use_reference_explanation)
                parent = None
            else:
                feedback = regeneration_feedback(conn, item_id=row["id"], rubric_body=rubric,
                                                 blocking=pc.screen.blocking)
                messages, phash = build_regeneration_messages(row, feedback, mode=pc.generate.mode)
                parent = feedback["previous"]["version"]
            params = _params(pc, row, row["version"], f"{row['id']}:v{row['version']}", structured)
            jobs.append(Job(item=row, kind=kind, version=row["version"], messages=messages, prompt_hash=phash,
                            params=params, request_hash=request_hash(model_id, messages, params),
                            parent_version=parent))
        if jobs:
            hits = dict(conn.execute(select(llm_cache.c.request_hash, llm_cache.c.response)
                                     .where(llm_cache.c.request_hash.in_([j.request_hash for j in jobs]))).all())
            for job in jobs:
                job.cached = hits.get(job.request_hash)
    return jobs


def _rationale_row(out: Outcome, rationale_id: str, ts) -> dict[str, Any]:
    job = out.job
    cols = parse_completion(out.completion, job.item)
    if out.cached:
        cols.update(prompt_tokens=0, completion_tokens=0, cost=0.0)
    structured = "json" if job.params.json_schema else ("answer" if job.params.answer_choices else None)
    return {
        "id": rationale_id, "item_id": job.item["id"], "version": job.version, "parent_version": job.parent_version,
        "origin": "generated" if job.kind == DRAFT else "regenerated", "author": f"model:{cols['model']}",
        "params": {"temperature": job.params.temperature, "max_tokens": job.params.max_tokens,
                   "top_p": job.params.top_p, "seed": job.params.seed, "kind": job.kind, "structured": structured,
                   "cached": out.cached, "attempts": out.completion.attempts, "request_hash": job.request_hash},
        "prompt_hash": job.prompt_hash, "seed": job.params.seed, "idempotency_key": job.params.idempotency_key,
        "created_at": ts, **cols,
    }


def _cache_row(out: Outcome, ts) -> dict[str, Any]:
    c = out.completion
    return {"request_hash": out.job.request_hash, "model": c.model or "", "created_at": ts,
            "response": {"text": c.text, "reasoning": c.reasoning, "model": c.model,
                         "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens}}


def _insert_ignoring_duplicates(conn, table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, in the dialect at hand (cache rows: first writer wins)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)


def _prepare(outcomes: list[Outcome]) -> list[tuple[Outcome, dict[str, Any]]]:
    """Parse every completion into its rationale row (CPU only: done before taking the write turn)."""
    ts = repo.now()
    return [(out, _rationale_row(out, uuid.uuid4().hex, ts)) for out in outcomes if out.completion is not None]


def _store_drafts(conn, *, project_id: int, prepared: list[tuple[Outcome, dict[str, Any]]], worker: str) -> None:
    """Rationales, cache entries and the moves to `screening` for a group of results, in bulk.
    Raises StaleStateError or IntegrityError if any of them lost a race; the caller rolls the group back."""
    if not prepared:
        return
    conn.execute(insert(rationales), [row for _, row in prepared])
    fresh = {out.job.request_hash: out for out, _ in prepared if not out.cached}
    if fresh:
        ts = prepared[0][1]["created_at"]
        _insert_ignoring_duplicates(conn, llm_cache, [_cache_row(out, ts) for out in fresh.values()])
    for kind in (DRAFT, REGENERATE):
        group = [(out, row) for out, row in prepared if out.job.kind == kind]
        if not group:
            continue
        details = {out.job.item["id"]: {"rationale_id": row["id"], "version": row["version"], "origin": row["origin"],
                                         "parse_status": row["parse_status"]} for out, row in group}
        moved = repo.transition_items(conn, project_id=project_id, item_ids=list(details),
                                      expected=_WORKING_STATE[kind], target=ItemState.SCREENING,
                                      actor=f"worker:{worker}", details=details, claimed_by=None, claimed_until=None)
        if not moved:
            raise repo.StaleStateError("an item of the batch was moved by another worker")


def _persist(engine: Engine, *, project_id: int, outcomes: list[Outcome], worker: str, report: RunReport) -> None:
    """Store a batch of results: all in one transaction in the common case; when one of them lost a
    race (another worker stored it, or moved the item) that transaction is rolled back and the batch
    is stored item by item, each in its own savepoint, so only the loser is skipped."""
    prepared = _prepare(outcomes)
    failed = [o for o in outcomes if o.completion is None]
    try:
        with _WRITE_TURN, engine.begin() as conn:
            _store_drafts(conn, project_id=project_id, prepared=prepared, worker=worker)
            _store_failures(conn, failed, worker, report)
        report.stored += len(prepared)
        report.cached += sum(out.cached for out, _ in prepared)
        return
    except (repo.StaleStateError, IntegrityError):
        pass
    with _WRITE_TURN, engine.begin() as conn:
        for entry in prepared:
            try:
                with conn.begin_nested():
                    _store_drafts(conn, project_id=project_id, prepared=[entry], worker=worker)
                report.stored += 1
                report.cached += int(entry[0].cached)
            except (repo.StaleStateError, IntegrityError):
                report.skipped += 1
        _store_failures(conn, failed, worker, report)


def _store_failures(conn, failed: list[Outcome], worker: str, report: RunReport) -> None:
    for out in failed:
        try:
            with conn.begin_nested():
                repo.transition_item(conn, item_id=out.job.item["id"], expected=_WORKING_STATE[out.job.kind],
                                     target=ItemState.FAILED, actor=f"worker:{worker}", detail={"error": out.error},
                                     fail_reason=out.error, claimed_by=None, claimed_until=None)
            report.failed += 1
        except repo.StaleStateError:
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
    with engine.begin() as conn:
        work.expire_claim(conn, item_id=item_id, worker=worker)


async def run_llm_stage(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, backend: LLMBackend,
                        kind: str, limit: int | None = None, concurrency: int = 8, worker: str | None = None,
                        stop: asyncio.Event | None = None, structured: str | None = "auto",
                        on_progress: Callable[[RunReport], None] | None = None) -> RunReport:
    """Draft (or regenerate) until there is nothing left, `limit` items were claimed, or `stop` is set."""
    worker = worker or work.worker_id()
    if structured == "auto":
        structured = use_structured_output(pc, backend)
    report = RunReport()
    started, cpu_started = time.perf_counter(), time.process_time()
    stop = stop or asyncio.Event()
    slots = asyncio.Semaphore(concurrency)
    queue: asyncio.Queue[tuple[Outcome, asyncio.Future]] = asyncio.Queue()
    active: set[asyncio.Task] = set()

    with engine.begin() as conn:
        work.expire_dead_local_claims(conn, project_id=project["id"])

    async def writer() -> None:
        while True:
            first = await queue.get()
            batch = [first]
            while not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await asyncio.to_thread(_persist, engine, project_id=project["id"], outcomes=[o for o, _ in batch],
                                        worker=worker, report=report)
            except Exception as exc:  # a database outage: hand the error to every waiting job
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            if on_progress:
                on_progress(report)

    async def process(job: Job) -> None:
        async with slots:
            if stop.is_set():  # stopping: hand the claim back untouched instead of starting a request
                await asyncio.to_thread(_give_back, engine, job.item["id"], worker)
                return
            if job.cached is not None:
                c = job.cached
                outcome = Outcome(job, Completion(text=c["text"], model=c.get("model") or backend.model_id,
                                                  reasoning=c.get("reasoning")), cached=True)
            else:
                report.requests += 1
                try:
                    completion = await backend.complete(job.messages, job.params)
                    outcome = Outcome(job, completion)
                except LLMError as exc:
                    report.errors[type(exc).__name__ if exc.status is None else f"http {exc.status}"] += 1
                    outcome = Outcome(job, error=f"LLM request failed: {exc}"[:1000])
            fut = asyncio.get_running_loop().create_future()
            await queue.put((outcome, fut))
            await fut

    writer_task = asyncio.create_task(writer())
    try:
        while not stop.is_set():
            # keep a queue of claimed jobs behind the busy slots: claims come in chunks (few, cheap
            # transactions) early enough that a slot that frees up never waits for one
            chunk = max(concurrency // 2, 1)
            if len(active) > concurrency + chunk:
                await asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED)
                continue
            room = chunk if limit is None else min(chunk, limit - report.claimed)
            if room <= 0:
                if not active:
                    break
                await asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED)
                continue
            jobs = await asyncio.to_thread(_build_jobs, engine, project=project, pc=pc, kind=kind, worker=worker,
                                           limit=room, model_id=backend.model_id, structured=structured)
            report.claimed += len(jobs)
            for job in jobs:
                task = asyncio.create_task(process(job))
                active.add(task)
                task.add_done_callback(active.discard)
            if not jobs:
                if not active:
                    break
                await asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED)
        if active:
            await asyncio.gather(*active, return_exceptions=False)
    finally:
        for task in active:
            task.cancel()
        writer_task.cancel()
        report.wall_seconds = time.perf_counter() - started
        report.cpu_seconds = time.process_time() - cpu_started
    return report
