"""The OpenAPI document tells the truth: schemathesis, every check on, over every operation of /openapi.json,
as an anonymous caller, a reviewer, an adjudicator and an admin, on SQLite and PostgreSQL.

Driven through schemathesis's Python API in-process (the ASGI app, `schemathesis.openapi.from_asgi`), run by
its engine, the same that `schemathesis run --checks all` runs: the examples, coverage, fuzzing and stateful
phases (the stateful phase follows the document's OpenAPI links, e.g. from `GET /api/queue/next` to the
review operations). Fixed seed, bounded examples. Each run's summary (cases, distinct failures per check
and operation) is written to test-artifacts/api-contract/<backend>-<role>.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e '.[dev]')")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "api-contract"
ROLES = ("anonymous", "reviewer", "adjudicator", "admin")
SEED = 19
MAX_EXAMPLES = 8
STATEFUL_STEPS = 6


def _world(seed) -> dict[str, Any]:
    """What each role finds when it signs in: items waiting in review (the reviewer's queue), escalated
    items (the adjudicator's list), users of every role."""
    people = {role: seed.user(f"contract-{role}", role=role) for role in ROLES[1:]}
    for _ in range(6):
        seed.item()
    for _ in range(3):
        seed.item(state="escalated")
    return people


#: Operations whose schema-valid bodies the server may still refuse with 422, by rules no JSON Schema can
#: state (they depend on the project, on the item's state, or on a file's contents). The document says so
#: in each description and the 422 names the field; every other check, the negative ones included, holds
#: for them as for every operation.
STATE_DEPENDENT = {
    "submit_review": "scores name the project's rubric dimensions on its scale; a step mark must fall within the "
                     "version's steps and name a category of the project's taxonomy",
    "adjudicate_item": "with accept, `rationale_id` must be a version of this item",
    "store_rubric": "between fields: the scale's min below its max, unique dimension names, thresholds and anchors "
                    "within the scale",
    "import_bank": "the file must be a question bank the importer reads",
}
POSITIVE_STATUSES = ["2xx", "401", "403", "404", "409", "429"]


def _config():
    from schemathesis.config import SchemathesisConfig

    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
        "checks": {"enabled": True},
        "suppress-health-check": ["all"],
        "warnings": False,
        "operations": [{"include-operation-id": sorted(STATE_DEPENDENT), "checks": {
            "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}}}],
    })


def _signed_in_as(schema, engine, user: dict[str, Any], project_id: int) -> None:
    """Every case carries a fresh token of `user`: POST /api/logout revokes the one it was sent with,
    and must not sign the rest of the run out."""
    from web import factories

    @schema.auth(refresh_interval=None)
    class FreshToken:
        def get(self, case, context):
            with engine.begin() as conn:
                return factories.make_token(conn, user_id=user["id"], project_id=project_id)

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def run_contract(web_app, engine, user: dict[str, Any] | None, project_id: int) -> dict[str, Any]:
    """Run schemathesis over the app's document; a summary like the CLI's: cases and distinct failures."""
    from schemathesis.engine import events, from_schema
    from schemathesis.engine.statistic import Statistic

    schema = schemathesis.openapi.from_asgi("/openapi.json", web_app, config=_config())
    if user is not None:
        _signed_in_as(schema, engine, user, project_id)
    statistic = Statistic()
    phases: dict[str, int] = {}
    errors: list[str] = []
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.is_test_scenario:
            statistic.on_scenario_finished(event.recorder)
            phases[event.phase.value] = phases.get(event.phase.value, 0) + len(event.recorder.cases)
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format() if hasattr(event.info, 'format') else event.value}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
    failures: dict[str, set[str]] = {}
    for failure, check in statistic.observed_failures.values():
        first_line = (failure.message or "").strip().splitlines()[0] if (failure.message or "").strip() else ""
        failures.setdefault(check, set()).add(f"{failure.operation}: {failure.title}. {first_line}"[:300])
    examples = []
    for label, groups in statistic.failures.items():
        for group in groups.values():
            response = group.response
            examples.append(f"{label} -> {response.status_code if response else '-'} "
                            f"{(response.text if response else '')[:300]} | {group.code_sample[:600]}")
    return {"examples": sorted(examples), "cases": statistic.total_cases, "cases_per_phase": phases, "distinct_failures": len(statistic.unique_failures_map),
            "errors": errors, "server_errors": len(failures.get("not_a_server_error", ())),
            "failures": {check: sorted(found) for check, found in sorted(failures.items())},
            "seconds": round(time.monotonic() - started, 1)}


@pytest.mark.parametrize("role", ROLES)
def test_the_document_tells_the_truth(role, web_app, engine, seed, backend_name):
    people = _world(seed)
    summary = run_contract(web_app, engine, people.get(role), seed.project["id"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{backend_name}-{role}.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    assert summary["cases"] > 0
    assert not summary["errors"], summary["errors"]
    assert summary["distinct_failures"] == 0, json.dumps(summary["failures"], indent=2, ensure_ascii=False)
