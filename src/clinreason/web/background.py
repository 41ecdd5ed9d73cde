"""The worker inside `clinreason serve` (single-machine mode): the same loop as `clinreason run`, on its
own thread and event loop so the web app's requests never wait behind a model call."""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger(__name__)


class BackgroundWorker:
    def __init__(self, ctx, *, poll_seconds: float = 2.0):
        from clinreason.app import llm_backend

        self.ctx = ctx
        self.poll_seconds = poll_seconds
        pc = ctx.settings.project_config
        self.backend = llm_backend(ctx.settings, pc.llm.concurrency)
        self.judge = llm_backend(ctx.settings, judge=True) if pc.screen.judge else None
        self.model_id = self.backend.model_id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="clinreason-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=10)

    def _main(self) -> None:
        from clinreason.stages.worker import run_worker
        from clinreason.store import db as store_db
        from clinreason.store.projects import require_project

        async def go() -> None:
            self._stop = stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            with self.ctx.engine.connect() as conn:
                project = require_project(conn, name=self.ctx.project)
            pc = self.ctx.settings.project_config
            try:
                while not self._stop.is_set():
                    try:
                        await run_worker(self.ctx.engine, project=project, pc=pc, backend=self.backend,
                                         judge=self.judge, concurrency=pc.llm.concurrency,
                                         poll_seconds=self.poll_seconds, stop=self._stop)
                    except Exception:  # a database hiccup must not kill the worker for good
                        log.exception("worker round failed; retrying in %s s", self.poll_seconds)
                        await store_db.pause(stop, self.poll_seconds)
            finally:
                await self.backend.aclose()
                if self.judge is not None:
                    await self.judge.aclose()

        asyncio.run(go())

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: in-flight requests finish and are stored, nothing new is started."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=timeout)
