"""What the crash-safety scenarios share: their sizes (short under `make test`, long under `make soak`,
which sets CLINREASON_SOAK=1), the environment of the CLI processes they start, a read-only view of
the database, and the figures each scenario writes to test-artifacts/reliability/."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool

SOAK = os.environ.get("CLINREASON_SOAK") == "1"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"


def sized(short: Any, soak: Any) -> Any:
    """The scenario size for this run: `soak` under `make soak`, else `short`."""
    return soak if SOAK else short


def process_env(db_url: str, base_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "CLINREASON_DB": db_url, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("CLINREASON_LLM_BASE_URL", None)
    if base_url:
        env.update(CLINREASON_LLM_BASE_URL=base_url, CLINREASON_LLM_MODEL="fake-model")
    return env


def reader(db_url: str) -> Engine:
    """A plain engine for the test's own queries: no BEGIN IMMEDIATE on SQLite (the store's engine takes
    the write lock for every transaction, which would stall the processes under test), no pooled
    connections left open."""
    return create_engine(db_url, poolclass=NullPool)


def record_figures(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Write a scenario's figures where the closing note of a run can quote them; print them (-s shows them)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    figures = {"scenario": name, "soak": SOAK, **figures}
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, sort_keys=True))
    return figures
