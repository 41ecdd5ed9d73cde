"""Bulk drafting on Ray Data: `clinreason generate --engine ray` (and `regenerate`).

The same stage as the native runner (stages/runner.py) — the same claims, prompts, parameters, parse,
provenance, cache, privacy gate, idempotency keys (`<item>:v<n>`) and response journal — with the model
calls made by a Ray Data pipeline built by `ray.data.llm.build_processor`:

* `[generate] ray_engine = "http"` (default): `HttpRequestProcessorConfig` against the configured
  OpenAI-compatible endpoint(s) — `[llm] base_url` plus `[generate] ray_base_urls`; the items are dealt
  round-robin, one processor (one actor pool) per endpoint;
* `ray_engine = "vllm"`: `vLLMEngineProcessorConfig` with `ray_model_path`, the model running inside the
  cluster's GPU workers (vllm must be installed there).

Who does what. The driver (the process running this module) claims a *wave* of items, builds each request
with the stage's pure functions, and hands Ray one row per request. `preprocess` turns a row into the
processor's input (the OpenAI body; for vLLM, messages and sampling parameters) and `postprocess` turns
the processor's output into flat columns — pure functions of stages/ray_rows.py, unit-tested without Ray.
Results stream back to the driver block by block; each one is appended to the response journal
(store/journal.py) the moment it arrives, then the block is stored in one transaction. A driver killed
mid-run loses nothing: the next run stores what the journal holds before claiming anything, and asks
again only for what was in Ray's hands (sent, or answered but not yet delivered to the driver) — at most
the wave's requests in flight.

What runs inside Ray (the row functions and the HTTP session that replaces the stage's sequential,
crash-on-failure default) is in stages/ray_rows.py, which Ray's workers import.

Ray is imported lazily, inside the functions that need it (the `cluster` extra); the core works without it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Engine

from clinreason.config import ProjectConfig
from clinreason.llm.base import Completion
from clinreason.llm.openai_backend import cost_of
from clinreason.stages import runner
from clinreason.stages.ray_rows import (
    EndpointSessionFactory,
    http_postprocess,
    http_preprocess,
    vllm_postprocess,
    vllm_preprocess,
)
from clinreason.stages.runner import Job, Outcome, RunReport
from clinreason.store import db, work
from clinreason.store.journal import open_journal

log = logging.getLogger(__name__)

#: an HTTP actor mostly waits on sockets: a fraction of a CPU, so that a small machine runs several
_HTTP_ACTOR_CPUS = 0.25


class RayUnavailable(RuntimeError):
    """`--engine ray` without Ray installed (the `cluster` extra)."""


def import_ray() -> Any:
    """The `ray` module, or a RayUnavailable that says how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayUnavailable("--engine ray needs Ray Data: pip install 'clinreason[cluster]' "
                             f"(ray[data]>=2.44,<3) — {exc}") from None


@dataclass(frozen=True)
class RayPlan:
    """How one run uses Ray, resolved from the project's configuration and the command line."""

    engine: str  # "http" | "vllm"
    model: str  # the model id recorded with every rationale (and hashed into the cache key)
    base_urls: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    max_attempts: int = 5
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: requests in flight at once, per endpoint (http) or per engine replica (vllm)
    concurrency: int = 8
    batch_size: int = 16
    wave: int = 4096
    model_path: str | None = None
    vllm_replicas: int = 1
    vllm_engine_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def actors_per_endpoint(self) -> int:
        """HTTP actors per endpoint: each holds a batch's requests in flight at a time."""
        return max(1, -(-self.concurrency // self.batch_size))


def plan_from_config(pc: ProjectConfig, *, api_key: str | None, concurrency: int | None = None) -> RayPlan:
    """The run's plan; a ValueError names what is missing."""
    g, llm = pc.generate, pc.llm
    prices = {m: (float(p[0]), float(p[1])) for m, p in llm.prices.items() if len(p) == 2}
    conc = concurrency or llm.concurrency
    if g.ray_engine == "vllm":
        if not g.ray_model_path:
            raise ValueError('[generate] ray_engine = "vllm" needs [generate] ray_model_path (the model vLLM loads)')
        return RayPlan(engine="vllm", model=llm.model or g.ray_model_path, model_path=g.ray_model_path,
                       prices=prices, concurrency=conc, batch_size=g.ray_batch_size, wave=g.ray_wave,
                       vllm_replicas=g.ray_vllm_replicas, vllm_engine_kwargs=dict(g.ray_vllm_engine_kwargs))
    urls = tuple(dict.fromkeys(u.rstrip("/") for u in ([llm.base_url] if llm.base_url else []) + g.ray_base_urls))
    if not urls:
        raise ValueError("--engine ray asks an OpenAI-compatible endpoint: set CLINREASON_LLM_BASE_URL "
                         "([llm] base_url) or [generate] ray_base_urls")
    if not llm.model:
        raise ValueError("--engine ray needs a model name: set CLINREASON_LLM_MODEL (the id the server lists)")
    return RayPlan(engine="http", model=llm.model, base_urls=urls, api_key=api_key, timeout=llm.timeout,
                   max_attempts=llm.max_attempts, prices=prices, concurrency=conc,
                   batch_size=min(g.ray_batch_size, conc), wave=g.ray_wave)


# -- the stage's pure functions: a job in, a row out; a row in, the processor's input; its output, an outcome ---

def job_row(job: Job) -> dict[str, Any]:
    """The dataset row for one request. The request travels as JSON text so that every row has the same
    flat schema whatever its messages and JSON schema look like."""
    p = job.params
    request = {"messages": job.messages,
               "params": {"temperature": p.temperature, "max_tokens": p.max_tokens, "top_p": p.top_p, "seed": p.seed,
                          "json_schema": p.json_schema}}
    return {"item_id": job.item.id, "version": job.version, "idempotency_key": p.idempotency_key or "",
            "request": json.dumps(request, ensure_ascii=False)}


def outcome_of(result: dict[str, Any], job: Job, *, model: str,
               prices: dict[str, tuple[float, float]]) -> Outcome:
    """A result row back into the runner's Outcome for its job: a completion with its cost, or the error."""
    if result.get("error"):
        return Outcome(job, error=str(result["error"])[:1000])
    prompt_tokens, completion_tokens = int(result["prompt_tokens"] or 0), int(result["completion_tokens"] or 0)
    completion = Completion(text=result["text"] or "", model=model, reasoning=result.get("reasoning"),
                            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                            latency_ms=float(result.get("latency_ms") or 0.0),
                            cost=cost_of(prices, model, prompt_tokens, completion_tokens),
                            attempts=int(result.get("attempts") or 1),
                            extra={"served_model": result.get("served_model")})
    return Outcome(job, completion=completion)


# -- processors -----------------------------------------------------------------------------------------

def http_processor_config(plan: RayPlan, base_url: str) -> Any:
    """The HTTP processor's config for one endpoint."""
    from ray.data.llm import HttpRequestProcessorConfig, HttpRequestStageConfig

    return HttpRequestProcessorConfig(
        # a fixed pool (m = n): every actor starts at once instead of the pool growing from one while work waits
        url=f"{base_url}/chat/completions", batch_size=plan.batch_size,
        concurrency=(plan.actors_per_endpoint, plan.actors_per_endpoint),
        max_retries=0,  # the session retries (see EndpointSession); what it hands Ray is final
        session_factory=EndpointSessionFactory(api_key=plan.api_key, timeout=plan.timeout,
                                               max_attempts=plan.max_attempts,
                                               connections=max(8, plan.batch_size * 2)),
        http_request_stage=HttpRequestStageConfig(num_cpus=_HTTP_ACTOR_CPUS))


def vllm_processor_config(plan: RayPlan) -> Any:
    """The vLLM processor's config (GPU workers; `should_continue_on_error` makes a failed row an error row,
    which becomes a failed item, instead of failing the whole run)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    assert plan.model_path is not None
    engine_kwargs = {"tensor_parallel_size": 1, **plan.vllm_engine_kwargs}
    return vLLMEngineProcessorConfig(model_source=plan.model_path, engine_kwargs=engine_kwargs,
                                     batch_size=plan.batch_size, concurrency=plan.vllm_replicas,
                                     should_continue_on_error=True)


def _processors(plan: RayPlan) -> list[Any]:
    import functools

    from ray.data.llm import build_processor

    cheap = {"num_cpus": _HTTP_ACTOR_CPUS}  # the same as the HTTP stage's, so that Ray fuses the maps with it
    if plan.engine == "vllm":
        return [build_processor(vllm_processor_config(plan), preprocess=vllm_preprocess,
                                postprocess=vllm_postprocess, postprocess_map_kwargs=cheap)]
    return [build_processor(http_processor_config(plan, url), preprocess=functools.partial(http_preprocess,
                                                                                            model=plan.model),
                            postprocess=http_postprocess, preprocess_map_kwargs=cheap, postprocess_map_kwargs=cheap)
            for url in plan.base_urls]


# -- the driver -----------------------------------------------------------------------------------------

def connect(ray: Any, *, address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray with `num_cpus`; usage stats
    off either way. Returns whether this call started Ray (and so should shut it down)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"log_to_driver": False, "configure_logging": True, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **quiet)
    return True


def _error_kind(error: str) -> str:
    """How the run report counts a failed request, as the native runner does: `http <status>`, else the kind."""
    status = re.search(r"answered HTTP (\d{3})", error)
    if status:
        return f"http {status.group(1)}"
    return "error body" if "answered with an error" in error else "no answer"


class _RayRun:
    def __init__(self, engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, plan: RayPlan, kind: str,
                 limit: int | None, worker: str, stop: threading.Event, structured: str | None,
                 on_progress: Callable[[RunReport], None] | None, journal_dir: Path | None):
        self.engine, self.project, self.pc, self.plan, self.kind = engine, project, pc, plan, kind
        self.limit, self.worker, self.stop, self.structured = limit, worker, stop, structured
        self.on_progress = on_progress
        self.journal = open_journal(engine.url, journal_dir)
        self.report = RunReport()

    def run(self, ray: Any) -> None:
        try:
            self.report.recovered = runner._start_run(self.engine, self.journal, project_id=self.project["id"],
                                                      worker=self.worker)
            processors = _processors(self.plan)
            while not self.stop.is_set():
                room = self.plan.wave if self.limit is None else min(self.plan.wave, self.limit - self.report.claimed)
                if room <= 0 or not self._wave(ray, processors, room):
                    return
        finally:
            self.journal.close()

    def _wave(self, ray: Any, processors: list[Any], room: int) -> int:
        """Claim up to `room` items, answer them, store the answers; returns how many were claimed."""
        held_before = self.report.held
        jobs = runner._build_jobs(self.engine, project=self.project, pc=self.pc, kind=self.kind, worker=self.worker,
                                  limit=room, model_id=self.plan.model, structured=self.structured,
                                  report=self.report)
        claimed = len(jobs) + self.report.held - held_before
        self.report.claimed += claimed
        cached = [job for job in jobs if job.cached is not None]
        if cached:
            outcomes = [Outcome(j, Completion(text=j.cached["text"], model=j.cached.get("model") or self.plan.model,
                                              reasoning=j.cached.get("reasoning")), cached=True)
                        for j in cached if j.cached is not None]
            runner._persist(self.engine, project_id=self.project["id"], outcomes=outcomes, worker=self.worker,
                            report=self.report)
        fresh = {(job.item.id, job.version): job for job in jobs if job.cached is None}
        if fresh:
            self._ask(ray, processors, fresh)
        return claimed

    def _dataset(self, ray: Any, processors: list[Any], jobs: list[Job]) -> Any:
        parts = []
        for n, processor in enumerate(processors):
            rows = [job_row(job) for job in jobs[n::len(processors)]]
            if rows:
                parts.append(processor(ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // self.plan.batch_size))))
        return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])

    def _ask(self, ray: Any, processors: list[Any], fresh: dict[tuple[str, int], Job]) -> None:
        """Stream the wave's requests through Ray; journal each answer as it arrives, store block by block.
        Whatever is left unanswered (a stop, or Ray failing) has its claim handed back."""
        unanswered = dict(fresh)
        dataset = self._dataset(ray, processors, list(fresh.values()))
        try:
            for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                outcomes = []
                for result in block.to_pylist():
                    job = unanswered.pop((result["item_id"], int(result["version"])), None)
                    if job is None:
                        continue  # not ours (cannot happen: one row per job), or delivered twice
                    outcome = outcome_of(result, job, model=self.plan.model, prices=self.plan.prices)
                    self.report.requests += 1  # answered; one that Ray had not answered when the run ended is not counted
                    if outcome.error:
                        self.report.errors[_error_kind(outcome.error)] += 1
                    self.journal.append(runner._journal_entry(outcome, self.project["id"]))
                    outcomes.append(outcome)
                segments = self.journal.seal()
                runner._persist(self.engine, project_id=self.project["id"], outcomes=outcomes, worker=self.worker,
                                report=self.report)
                self.journal.discard(segments)
                if self.on_progress:
                    self.on_progress(self.report)
                if self.stop.is_set():
                    break
        finally:
            if unanswered:
                with db.transaction(self.engine) as conn:
                    for job in unanswered.values():
                        work.expire_claim(conn, item_id=job.item.id, worker=self.worker)


def run_ray_stage(engine: Engine, *, project: dict[str, Any], pc: ProjectConfig, plan: RayPlan, kind: str,
                  limit: int | None = None, ray_address: str | None = None, num_cpus: int | None = None,
                  worker: str | None = None, stop: threading.Event | None = None, structured: str | None = "auto",
                  on_progress: Callable[[RunReport], None] | None = None,
                  journal_dir: Path | None = None) -> RunReport:
    """Draft (or regenerate, `kind`) on Ray until nothing is left, `limit` items were claimed, or `stop` is
    set; the same RunReport as the native runner's."""
    ray = import_ray()
    started, cpu_started = time.perf_counter(), time.process_time()
    if structured == "auto":
        structured = "json" if pc.llm.structured else None
    run = _RayRun(engine, project=project, pc=pc, plan=plan, kind=kind, limit=limit, worker=worker or work.worker_id(),
                  stop=stop or threading.Event(), structured=structured, on_progress=on_progress,
                  journal_dir=journal_dir)
    owned = connect(ray, address=ray_address, num_cpus=num_cpus)
    try:
        run.run(ray)
    finally:
        run.report.wall_seconds = time.perf_counter() - started
        run.report.cpu_seconds = time.process_time() - cpu_started
        if owned:
            ray.shutdown()
    return run.report
