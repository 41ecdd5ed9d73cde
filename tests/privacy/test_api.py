"""The privacy admin API (web/api_privacy.py) and pages (web/pages_privacy.py): admins only; the held list, an item cut into highlighted pieces, and release / edit / exclude with the
errors a client can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinreason.config import ProjectConfig, Settings
from clinreason.llm.fake_backend import FakeBackend
from clinreason.stages.ingest import import_path
from clinreason.stages.runner import DRAFT, run_llm_stage

MRN_CASE = "MRN 00456789. A 45-year-old man has chest pain. Which is the most likely diagnosis?"
ZH_CASE = "患者手机13800138000。男，45岁，发热3天。最可能的诊断是"


@pytest.fixture
def api(engine, project, db_url, tmp_path):
    import asyncio

    from fastapi.testclient import TestClient

    from clinreason.store import db
    from clinreason.web import auth, create_app

    bank = tmp_path / "bank.jsonl"
    bank.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in (
        {"question": MRN_CASE, "options": {"A": "MI", "B": "GERD"}, "answer": "A"},
        {"question": ZH_CASE, "options": {"A": "肺炎", "B": "感冒"}, "answer": "A", "language": "zh"})),
        encoding="utf-8")
    import_path(engine, project="default", path=bank, fmt="jsonl")
    pc = ProjectConfig()
    pc.privacy.scope = "all"
    asyncio.run(run_llm_stage(engine, project=project, pc=pc, backend=FakeBackend(), kind=DRAFT))
    settings = Settings(db_url=db_url, project="default", config_path=Path(tmp_path / "clinreason.toml"),
                        project_config=ProjectConfig())
    app = create_app(settings, engine=engine, auth_config=auth.AuthConfig(secret_key="s" * 40))
    headers = {}
    with db.transaction(engine) as conn:
        for name, role in (("boss", "admin"), ("ana", "reviewer")):
            user_id = auth.create_user(conn, username=name, role=role, password="a-long-password-1", specialties=[],
                                    actor="test", project_id=project["id"])
            token = auth.create_token(conn, user_id=user_id, project_id=project["id"], kind="personal", name="t")
            headers[name] = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        yield client, headers


def test_admins_see_what_is_held_and_where(api):
    client, auth = api
    assert client.get("/api/admin/privacy").status_code == 401
    assert client.get("/api/admin/privacy", headers=auth["ana"]).status_code == 403
    held = client.get("/api/admin/privacy", headers=auth["boss"]).json()["held"]
    assert len(held) == 2 and {h["summary"] for h in held} == {"1 × MEDICAL_RECORD_NUMBER", "1 × PHONE_NUMBER"}
    mrn = next(h for h in held if "MEDICAL" in h["summary"])
    view = client.get(f"/api/admin/privacy/{mrn['item_id']}", headers=auth["boss"]).json()
    question = next(s for s in view["segments"] if s["name"] == "question")
    found = [p for p in question["pieces"] if "finding" in p]
    assert [(p["text"], p["finding"]["type"]) for p in found] == [("00456789", "MEDICAL_RECORD_NUMBER")]
    assert "".join(p["text"] for p in question["pieces"]) == MRN_CASE
    assert "00456789" not in json.dumps(view["records"])  # the records keep spans and a masked preview
    assert client.get("/api/admin/privacy/nope", headers=auth["boss"]).status_code == 404


def test_the_actions_answer_with_what_to_fix(api):
    client, auth = api
    held = {h["summary"]: h["item_id"] for h in client.get("/api/admin/privacy", headers=auth["boss"]).json()["held"]}
    mrn, zh = held["1 × MEDICAL_RECORD_NUMBER"], held["1 × PHONE_NUMBER"]
    missing = client.post(f"/api/admin/privacy/{mrn}/release", json={"reason": ""}, headers=auth["boss"])
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"][-1] == "reason"
    assert client.post(f"/api/admin/privacy/{mrn}/release", json={"reason": "x"}, headers=auth["ana"]).status_code == 403
    done = client.post(f"/api/admin/privacy/{mrn}/release", json={"reason": "invented numbers"}, headers=auth["boss"])
    assert done.status_code == 200 and done.json()["state"] == "imported"
    again = client.post(f"/api/admin/privacy/{mrn}/release", json={"reason": "twice"}, headers=auth["boss"])
    assert again.status_code == 409 and "not held" in again.json()["detail"]
    bad = client.post(f"/api/admin/privacy/{zh}/edit", json={"reason": "fix", "options": {"Z": "x"}},
                      headers=auth["boss"])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "options"
    edited = client.post(f"/api/admin/privacy/{zh}/edit", json={"reason": "phone removed", "redact": True},
                         headers=auth["boss"]).json()
    assert edited["state"] == "imported" and edited["revision"] == 1
    view = client.get(f"/api/admin/privacy/{zh}", headers=auth["boss"]).json()
    assert view["revisions"][0]["question"] == ZH_CASE and view["revisions"][0]["replaced_by"] == "user:boss"
    assert client.post(f"/api/admin/privacy/{zh}/exclude", json={"reason": "x"}, headers=auth["boss"]).status_code == 409


def test_the_admin_page_highlights_what_was_found_and_a_release_needs_a_reason(api):
    client, auth = api
    assert client.get("/admin/privacy", headers=auth["ana"]).status_code == 403
    listing = client.get("/admin/privacy", headers={**auth["boss"], "Accept-Language": "en"})
    assert listing.status_code == 200 and "Held by the privacy gate" in listing.text
    held = client.get("/api/admin/privacy", headers=auth["boss"]).json()["held"]
    mrn = next(h for h in held if "MEDICAL" in h["summary"])
    page = client.get(f"/admin/privacy/{mrn['item_id']}", headers={**auth["boss"], "Accept-Language": "zh-CN"})
    assert page.status_code == 200 and "放行" in page.text
    assert '<mark class="finding" title="MEDICAL_RECORD_NUMBER' in page.text and "00456789</mark>" in page.text
    refused = client.post(f"/admin/privacy/{mrn['item_id']}/release", data={"reason": " "}, headers=auth["boss"])
    assert refused.status_code == 422 and 'role="alert"' in refused.text
    done = client.post(f"/admin/privacy/{mrn['item_id']}/release", data={"reason": "a synthetic record number"},
                       headers=auth["boss"], follow_redirects=False)
    assert done.status_code == 303
    left = client.get("/api/admin/privacy", headers=auth["boss"]).json()["held"]
    assert [h["item_id"] for h in left] == [h["item_id"] for h in held if h["item_id"] != mrn["item_id"]]


def test_the_dashboard_counts_the_held_items_and_what_was_found(api):
    client, auth = api
    page = client.get("/dashboard", headers=auth["boss"]).text
    line = page.split('id="privacy-gate"', 1)[1].split("</p>", 1)[0]
    assert "2 item(s) held" in line and "MEDICAL_RECORD_NUMBER 1" in line and "PHONE_NUMBER 1" in line
    assert 'href="/admin/privacy"' in line
    reviewer_view = client.get("/dashboard", headers=auth["ana"]).text
    assert "2 item(s) held" in reviewer_view and 'href="/admin/privacy"' not in reviewer_view  # admins act on them
    mrn = next(h["item_id"] for h in client.get("/api/admin/privacy", headers=auth["boss"]).json()["held"]
               if "MEDICAL" in h["summary"])
    client.post(f"/api/admin/privacy/{mrn}/release", json={"reason": "invented numbers"}, headers=auth["boss"])
    after = client.get("/dashboard", headers=auth["boss"]).text.split('id="privacy-gate"', 1)[1].split("</p>", 1)[0]
    assert "1 item(s) held" in after and "MEDICAL_RECORD_NUMBER" not in after
    zh = client.get("/dashboard", headers={**auth["boss"], "Accept-Language": "zh-CN"}).text
    assert "Privacy gate" not in zh and 'id="privacy-gate"' in zh
