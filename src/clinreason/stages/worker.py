"""The worker loop behind `clinreason run`: keeps drafting, regeneration and screening moving until
stopped. Several workers may share one PostgreSQL database; each claims its own items."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import Engine

from clinreason.config import ProjectConfig
from clinreason.llm.base import LLMBackend
from clinreason.stages.runner import DRAFT, REGENERATE, RunReport, run_llm_stage
from clinreason.stages.screen import ScreenReport, run_screening
from clinreason.store import work


@dataclass
class WorkerReport:
    rounds: int = 0
    drafted: int = 0
    regenerated: int = 0
    failed: int = 0
    screened: int = 0
    to_review: int = 0
    requests: int = 0
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
    With `once`, return when a full round found nothing to do."""
    stop = stop or asyncio.Event()
    worker = work.worker_id()
    report = WorkerReport()
    while not stop.is_set():
        report.rounds += 1
        did = 0
        for kind in (REGENERATE, DRAFT):
            r = await run_llm_stage(engine, project=project, pc=pc, backend=backend, kind=kind, limit=batch,
                                    concurrency=concurrency, worker=worker, stop=stop)
            report.add_llm(kind, r)
            did += r.claimed
            if stop.is_set():
                break
        if stop.is_set():
            break
        s = await run_screening(engine, project=project, pc=pc, judge=judge, worker=worker)
        report.add_screen(s)
        did += s.screened + s.to_regeneration
        if on_round:
            on_round(report)
        if did == 0:
            if once:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
    return report
