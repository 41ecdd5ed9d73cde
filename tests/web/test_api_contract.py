"""The OpenAPI document tells the truth: schemathesis, every check on, over every operation of /openapi.json,
as an anonymous caller, a reviewer, an adjudicator and an admin, on SQLite and PostgreSQL; and the few
promises of the document a fuzzer does not test by itself (405 and Allow, 503, versions, the CLI verb).

schemathesis runs through its Python API, in-process against the ASGI app (`schemathesis.openapi.from_asgi`),
driven by its engine: the same phases `schemathesis run --checks all` runs (examples, coverage, fuzzing, and
the stateful phase, which follows the document's OpenAPI links: from GET /api/queue/next to the review
operations, from the item listings to the item operations). Fixed seed, bounded examples. Each run's summary
(cases per phase, the stateful answers, distinct failures per check and operation) is written to
test-artifacts/api-contract/<backend>-<role>.json.

Skipped, with a message, where schemathesis is not installed, except under CI=true (it is in `dev`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

try:
    import schemathesis
except ImportError:  # pragma: no cover - the dev extra installs it
    if os.environ.get("CI") == "true":
        raise
    schemathesis = None

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "api-contract"
ROLES = ("anonymous", "reviewer", "adjudicator", "admin")
SEED = 19
MAX_EXAMPLES = 8  # per operation in the fuzzing phase
STATEFUL_SCENARIOS = 20  # sequences of calls along the links, each of at most STATEFUL_STEPS
STATEFUL_STEPS = 8

#: Operations whose schema-valid bodies the server may still refuse with 422, by rules no JSON Schema can
#: state: they depend on the project, on the item's state, or on a file's contents. The document says so in
#: each description, and the 422 names the field; every other check, the negative ones included, holds for
#: them as for every operation.
STATE_DEPENDENT = {
    "submit_review": "scores name the project's rubric dimensions, on its scale; a step mark falls within the "
                     "version's steps and names a category of the project's taxonomy; an edit differs from the text",
    "adjudicate_item": "with accept, `rationale_id` is a version of this item",
    "store_rubric": "between fields: the scale's min below its max, unique dimension names, thresholds and anchors "
                    "within the scale",
    "import_bank": "the file is a question bank the importer reads",
}
#: what schemathesis expects of a schema-valid request by default (positive_data_acceptance)
POSITIVE_STATUSES = ["2xx", "401", "403", "404", "409", "429"]

needs_schemathesis = pytest.mark.skipif(schemathesis is None,
                                        reason="schemathesis is not installed (pip install -e '.[dev]')")


def _world(seed) -> dict[str, Any]:
    """What each role finds: items in review (the reviewer's queue), escalated items (the adjudicator's
    list), a user of every role."""
    people = {role: seed.user(f"contract-{role}", role=role) for role in ROLES[1:]}
    for _ in range(6):
        seed.item()
    for _ in range(3):
        seed.item(state="escalated")
    return people


def contract_config():
    from schemathesis.config import SchemathesisConfig

    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {"stateful": {"max-steps": STATEFUL_STEPS, "generation": {"max-examples": STATEFUL_SCENARIOS}}},
        "checks": {"enabled": True},
        "suppress-health-check": ["all"],
        "warnings": False,
        "cache": {"enabled": False},  # nothing learnt from an earlier run: the same seed, the same cases
        "operations": [{"include-operation-id": sorted(STATE_DEPENDENT), "checks": {
            "positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, "422"]}}}],
    })


def _signed_in_as(schema, engine, user: dict[str, Any], project_id: int) -> None:
    """Every case carries a token of `user`; POST /api/logout gets one of its own, since it revokes the token
    it is sent with and must not sign the rest of the run out."""
    from web import factories

    def mint() -> str:
        with engine.begin() as conn:
            return factories.make_token(conn, user_id=user["id"], project_id=project_id)

    shared = mint()

    @schema.auth(refresh_interval=None)
    class Token:
        def get(self, case, context):
            return mint() if case.path == "/api/logout" else shared

        def set(self, case, data, context):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def run_contract(web_app, engine, user: dict[str, Any] | None, project_id: int) -> dict[str, Any]:
    """schemathesis over the app's document as `user` (None: nobody signed in); a summary like the CLI's."""
    from schemathesis.engine import events, from_schema
    from schemathesis.engine.statistic import Statistic

    schema = schemathesis.openapi.from_asgi("/openapi.json", web_app, config=contract_config())
    if user is not None:
        _signed_in_as(schema, engine, user, project_id)
    statistic = Statistic()
    phases: dict[str, int] = {}
    stateful: dict[str, dict[str, int]] = {}
    errors: list[str] = []
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.is_test_scenario:
            statistic.on_scenario_finished(event.recorder)
            phases[event.phase.value] = phases.get(event.phase.value, 0) + len(event.recorder.cases)
            if event.phase.value == "stateful":
                for case_id, node in event.recorder.cases.items():
                    interaction = event.recorder.interactions.get(case_id)
                    if interaction is not None and interaction.response is not None:
                        answers = stateful.setdefault(f"{node.value.method} {node.value.path}", {})
                        code = str(interaction.response.status_code)
                        answers[code] = answers.get(code, 0) + 1
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {type(event.value).__name__}: {str(event.value)[:500]}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
    failures: dict[str, set[str]] = {}
    for failure, check in statistic.observed_failures.values():
        first_line = next(iter((failure.message or "").strip().splitlines()), "")
        failures.setdefault(check, set()).add(f"{failure.operation}: {failure.title}. {first_line}"[:300])
    examples = []
    for label, groups in statistic.failures.items():
        for group in groups.values():
            response = group.response
            examples.append(f"{label} -> {response.status_code if response else '-'} "
                            f"{(response.text if response else '')[:300]} | {group.code_sample[:600]}")
    return {"cases": statistic.total_cases, "cases_per_phase": phases,
            "distinct_failures": len(statistic.unique_failures_map),
            "server_errors": len(failures.get("not_a_server_error", ())), "errors": errors,
            "failures": {check: sorted(found) for check, found in sorted(failures.items())},
            "failing_cases": sorted(examples), "stateful_answers": dict(sorted(stateful.items())),
            "seconds": round(time.monotonic() - started, 1)}


@needs_schemathesis
@pytest.mark.parametrize("role", ROLES)
def test_the_document_tells_the_truth(role, web_app, engine, seed, backend_name):
    people = _world(seed)
    summary = run_contract(web_app, engine, people.get(role), seed.project["id"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{backend_name}-{role}.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{backend_name} {role}: {summary['cases']} cases {summary['cases_per_phase']}, "
          f"{summary['distinct_failures']} distinct failures, {summary['server_errors']} server errors, "
          f"{summary['seconds']} s")
    assert not summary["errors"], summary["errors"]
    assert summary["distinct_failures"] == 0, json.dumps(summary["failures"], indent=2, ensure_ascii=False)
    assert set(summary["cases_per_phase"]) >= {"coverage", "fuzzing", "stateful"}
    assert summary["cases"] > 500
    if role == "reviewer":  # the links carry a real lease from the queue to the review operations
        reached = summary["stateful_answers"]
        assert reached.get("GET /api/queue/next", {}).get("200"), reached
        review_ops = [k for k in reached if k.startswith(("POST /api/assignments/", "PUT /api/assignments/"))]
        assert any(code != "404" for k in review_ops for code in reached[k]), reached


# --- what the fuzzer does not test by itself -------------------------------------------------------------

def _document(client) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def test_every_operation_documents_its_errors_with_the_one_error_body(client):
    doc = _document(client)
    ids = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            ids.append(op["operationId"])
            answers = op["responses"]
            assert "503" in answers, f"{method} {path}"
            if op.get("security"):
                assert {"401"} <= set(answers) and answers["401"]["headers"]["WWW-Authenticate"]["required"]
            if "{" in path:
                assert "404" in answers, f"{method} {path}"
            for status, answer in answers.items():
                if status[0] in "45":
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert len(ids) == len(set(ids)), "operationIds name the generated client's functions: no two alike"
    assert doc["paths"]["/api/login"]["post"]["responses"]["429"]["headers"]["Retry-After"]["required"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_request_schemas_say_what_the_server_enforces(client):
    schemas = _document(client)["components"]["schemas"]
    assert schemas["NewUser"]["properties"]["role"]["enum"] == ["reviewer", "adjudicator", "admin"]
    assert schemas["NewUser"]["additionalProperties"] is False
    assert schemas["RubricIn"]["required"] == ["dimensions"] and schemas["RubricIn"]["additionalProperties"] is False
    mark = schemas["StepMark"]
    assert mark["properties"]["step"]["minimum"] == 1 and mark["properties"]["verdict"]["enum"] == ["ok", "error"]
    assert mark["required"] == ["step", "verdict"]
    assert {"minor", "major", "critical"} == set(mark["properties"]["severity"]["anyOf"][0]["enum"])
    upload = _document(client)["paths"]["/api/admin/import"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"auto", "medqa", "cmexam", "jsonl", "csv"} <= set(upload["schema"]["properties"]["format"]["enum"])


def test_the_document_is_versioned_with_the_package():
    import tomllib

    from clinreason import __version__
    from clinreason.web.app import openapi_document

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert openapi_document()["info"]["version"] == __version__ == declared


def test_clinreason_openapi_prints_the_served_document_without_a_server(client):
    from typer.testing import CliRunner

    from clinreason.cli import app

    out = CliRunner().invoke(app, ["openapi"], env={"CLINREASON_DB": "sqlite:////nonexistent/dir/none.db"})
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == _document(client)


def test_an_undocumented_method_and_options_answer_405_with_the_documented_methods(client, seed):
    root = seed.user("root", role="admin")
    for method in ("OPTIONS", "DELETE", "PUT"):
        r = client.request(method, "/api/admin/users", headers=root["auth"])
        assert r.status_code == 405, method
        assert r.headers["allow"] == "GET, POST"  # two routes share the path: both are listed (no HEAD: not served)
        assert r.json() == {"detail": "Method Not Allowed"}
    r = client.options("/api/assignments/a1/review")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    zh = client.request("DELETE", "/api/status", headers={"Accept-Language": "zh"})
    assert zh.status_code == 405 and zh.headers["allow"] == "GET" and zh.json()["detail"] != "Method Not Allowed"


def test_a_database_that_does_not_answer_is_503_with_retry_after(client, seed, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from clinreason.web import api_items

    alice = seed.user("alice")

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server: Connection refused"))

    monkeypatch.setattr(api_items, "status_counts", down)
    for lang, text in (("en", "the database is not answering"), ("zh", "数据库")):
        r = client.get("/api/status", headers={**alice["auth"], "Accept-Language": lang})
        assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
        assert text in r.json()["detail"]


def test_a_broken_query_is_still_a_server_error_not_an_outage(web_app, seed, monkeypatch):
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import OperationalError

    from clinreason.web import api_items

    alice = seed.user("alice")
    monkeypatch.setattr(api_items, "status_counts", lambda *a, **k: (_ for _ in ()).throw(
        OperationalError("SELECT nothing", {}, Exception("no such table: nothing"))))
    with TestClient(web_app, raise_server_exceptions=False) as client:
        assert client.get("/api/status", headers=alice["auth"]).status_code == 500


def test_a_taken_user_name_is_409_naming_the_field(client, seed):
    root = seed.user("root", role="admin")
    seed.user("alice")
    body = {"username": "alice", "password": "long enough", "role": "reviewer"}
    r = client.post("/api/admin/users", json=body, headers=root["auth"])
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["body", "username"]
    unicode_name = client.post("/api/admin/users", json={**body, "username": "张医生"}, headers=root["auth"])
    assert unicode_name.status_code == 422 and unicode_name.json()["detail"][0]["loc"] == ["body", "username"]


def test_bodies_are_taken_as_typed_not_coerced(client, seed):
    """The document says integer, boolean, enum: a string that looks like one is refused, as the schema says."""
    root, alice = seed.user("root", role="admin"), seed.user("alice")
    seed.item()
    assert client.patch("/api/admin/users/alice", json={"active": "false"}, headers=root["auth"]).status_code == 422
    assert client.post("/api/login", json={"username": "alice", "password": "x", "extra": 1}).status_code == 422
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    from web.factories import SCORES

    bad_step = client.post(f"/api/assignments/{aid}/review", headers=alice["auth"],
                           json={"verdict": "accept", "scores": SCORES, "steps": [{"step": "1", "verdict": "ok"}]})
    assert bad_step.status_code == 422 and bad_step.json()["detail"][0]["loc"] == ["body", "steps[0]", "step"]
    out_of_range = client.post(f"/api/assignments/{aid}/review", headers=alice["auth"],
                               json={"verdict": "accept", "scores": SCORES, "steps": [{"step": 9, "verdict": "ok"}]})
    assert out_of_range.status_code == 422 and out_of_range.json()["detail"][0]["loc"] == ["body", "steps[0]", "step"]
    assert "out of range" in out_of_range.json()["detail"][0]["msg"], "the stage's own rule, named the same way"
