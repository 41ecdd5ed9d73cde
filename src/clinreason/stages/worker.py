"""The worker loop behind `clinreason run`: keeps drafting, regeneration and screening moving until
stopped. Several workers may share one PostgreSQL database; each claims its own items."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import Engine

from clinreason.config import ProjectConfig
from clinreason.domain.lifecycle import ItemState
from clinreason.llm.base import LLMBackend
from clinreason.stages.runner import DRAFT, REGENERATE, RunReport, recover_journals, run_llm_stage
from clinreason.stages.screen import ScreenReport, run_screening
from clinreason.store import db, work
from clinreason.store.items import project_items
from clinreason.store.journal import open_journal

log = logging.getLogger(__name__)
#: the states in which a worker holds claims while it works on an item
_CLAIMED_STATES = [str(ItemState.GENERATING), str(ItemState.REGENERATING), str(ItemState.SCREENING)]


@dataclass
class WorkerReport:
    rounds: int = 0
    drafted: int = 0
    regenerated: int = 0
    failed: int = 0
    screened: int = 0
    to_review: int = 0
    requests: int = 0
    #: rounds the database cut short (it stopped answering where no stage waits for it: screening); the
    #: drafting stages wait for it themselves, logging each attempt, and are not counted here
    outages: int = 0
    #: stopped (SIGTERM) while the database was not answering: received results wait in the journal
    stopped_during_outage: bool = False
    log: list[str] = field(default_factory=list)

    def add_llm(self, kind: str, r: RunReport) -> None:
        if kind == DRAFT:
            self.drafted += r.stored
        else:
            self.regenerated += r.stored
        self.failed += r.failed
        self.requests += r.requests

    def add_screen(self, r: ScreenReport) -> None:
        self.screened += r.screened
        self.to_review += r.to_review


async def run_worker(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, backend: LLMBackend,
                     judge: LLMBackend | None = None, concurrency: int = 8, once: bool = False,
                     poll_seconds: float = 2.0, stop: asyncio.Event | None = None, batch: int = 64,
                     on_round: Callable[[WorkerReport], None] | None = None) -> WorkerReport:
    """One loop: draft a batch, regenerate a batch, screen what is waiting; sleep when idle.
    With `once`, return when a full round found nothing to do.

    The database going away (a restart, an outage) does not end the loop: the drafting stages wait for
    it themselves (their requests in flight finish, results wait in the journal); a round that fails
    anyway (screening) is abandoned, the worker waits with backoff until the database answers, stores
    what its journal holds, hands back the claims it still held, and starts the next round."""
    stop = stop or asyncio.Event()
    worker = work.worker_id()
    report = WorkerReport()
    while not stop.is_set():
        report.rounds += 1
        try:
            did = await _round(engine, project=project, pc=pc, backend=backend, judge=judge, concurrency=concurrency,
                               stop=stop, batch=batch, worker=worker, report=report)
        except Exception as exc:
            if not db.database_unavailable(exc):
                raise
            if not await _outage(engine, project=project, worker=worker, stop=stop, report=report, exc=exc):
                break
            continue
        if did is None:
            break
        if on_round:
            on_round(report)
        if did == 0:
            if once:
                break
            await db.pause(stop, poll_seconds)
    return report


async def _round(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, backend: LLMBackend,
                 judge: LLMBackend | None, concurrency: int, stop: asyncio.Event, batch: int, worker: str,
                 report: WorkerReport) -> int | None:
    """One round; how many items it moved (None: stopped half-way)."""
    did = 0
    for kind in (REGENERATE, DRAFT):
        r = await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=kind, limit=batch,
                                concurrency=concurrency, worker=worker, stop=stop)
        report.add_llm(kind, r)
        did += r.claimed
        if stop.is_set():
            return None
    s = await run_screening(engine, project=project, pc=pc, judge=judge, worker=worker)
    report.add_screen(s)
    return did + s.screened + s.to_regeneration


async def _outage(engine: Engine, *, project: dict[str, Any], worker: str, stop: asyncio.Event,
                  report: WorkerReport, exc: Exception) -> bool:
    """Pause until the database answers again, then tidy up after the abandoned round. False when the
    worker was stopped meanwhile."""
    report.outages += 1
    log.warning("worker %s: the database stopped answering mid-round (%s); paused until it is back", worker,
                db.error_summary(exc))
    try:
        if stop.is_set():
            raise exc
        await db.while_unavailable(lambda: asyncio.to_thread(db.ping, engine), what=f"worker {worker} paused",
                                   stop=stop)
        if stop.is_set():
            return False
        await db.while_unavailable(lambda: asyncio.to_thread(_after_outage, engine, project["id"], worker),
                                   what=f"worker {worker} resuming", stop=stop)
    except Exception as again:
        if db.database_unavailable(again) and stop.is_set():
            report.stopped_during_outage = True
            report.log.append("stopped while the database was not answering: what was received waits in the "
                              "journal and is stored by the next run on this host")
            return False
        raise
    log.warning("worker %s: the database answers again; carrying on", worker)
    return True


def _after_outage(engine: Engine, project_id: int, worker: str) -> None:
    """What the abandoned round left: results it had received are stored from its journal first (so that
    no other worker asks for them again), then every claim this worker still holds is handed back — no
    stage is running, so none of them is being worked on — for the next round (or another worker) to take
    over at once instead of when its lease runs out."""
    journal = open_journal(engine.url)
    try:
        recover_journals(engine, journal, worker=worker)
    finally:
        journal.close()
    with db.transaction(engine) as conn:
        for item in project_items(conn, project_id=project_id, states=_CLAIMED_STATES):
            if item.claimed_by == worker:
                work.expire_claim(conn, item_id=item.id, worker=worker)
