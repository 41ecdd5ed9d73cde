"""Item history with blind review, status, sanitised rendering, and the admin actions (rubric, import, users)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from clinreason.domain.rubric import DEFAULT_RUBRIC_DICT
from web.factories import SCORES, browser_login, csrf_of

EVIL = ('Look <script>alert("q")</script> and <img src=x onerror=alert(1)> or '
        '[click me](javascript:alert(document.cookie)) <a href="javascript:alert(2)" onclick="alert(3)">x</a>')


def _submit(client, user, comment):
    aid = client.get("/api/queue/next", headers=user["auth"]).json()["assignment_id"]
    r = client.post(f"/api/assignments/{aid}/review", headers=user["auth"],
                    json={"verdict": "accept", "scores": SCORES, "comments": {"general": comment}})
    assert r.status_code == 201
    return r.json()["review_id"]


def _tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag with its attributes, as a browser's parser would see them."""
    from html.parser import HTMLParser

    found: list = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_a_reviewer_sees_others_reviews_of_a_version_only_after_submitting_their_own(client, seed):
    alice, bob, root = seed.user("alice"), seed.user("bob"), seed.user("root", role="admin")
    item_id, _ = seed.item()
    _submit(client, alice, "alice thinks it is fine")
    bob_aid = client.get("/api/queue/next", headers=bob["auth"]).json()["assignment_id"]

    before = client.get(f"/api/items/{item_id}", headers=bob["auth"]).json()
    assert before["reviews"] == []
    assert "alice" not in json.dumps(before), "no name, score or comment of alice before bob submits"
    assert all("verdict" not in e["detail"] for e in before["events"] if e["kind"] == "review.submitted")
    page = client.get(f"/items/{item_id}", headers=bob["auth"]).text
    assert "alice thinks" not in page and "alice" not in page
    review_screen = client.get("/review", headers=bob["auth"]).text
    assert "alice" not in review_screen

    client.post(f"/api/assignments/{bob_aid}/review", headers=bob["auth"], json={"verdict": "accept", "scores": SCORES})
    after = client.get(f"/api/items/{item_id}", headers=bob["auth"]).json()
    assert sorted(r["reviewer"] for r in after["reviews"]) == ["alice", "bob"]
    assert "alice thinks it is fine" in client.get(f"/items/{item_id}", headers=bob["auth"]).text

    admin_view = client.get(f"/api/items/{item_id}", headers=root["auth"]).json()
    assert len(admin_view["reviews"]) == 2 and "user:alice" in [e["actor"] for e in admin_view["events"]]


def test_item_history_has_every_version_check_review_and_event(client, seed):
    alice, root = seed.user("alice"), seed.user("root", role="admin")
    item_id, _ = seed.item(rationale_text="Step 1: aspirin.\nFinal answer: A")
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    client.post(f"/api/assignments/{aid}/review", headers=alice["auth"],
                json={"verdict": "edit", "scores": SCORES, "edited_text": "Step 1: aspirin 300 mg chewed.\nFinal answer: A"})
    got = client.get(f"/api/items/{item_id}", headers=root["auth"]).json()
    assert {"id", "question", "options", "answer", "state", "versions", "checks", "reviews", "events"} <= got.keys()
    assert [v["version"] for v in got["versions"]] == [1, 2] and got["versions"][1]["origin"] == "edited"
    assert got["checks"][0]["version"] == 1
    assert got["reviews"][0]["verdict"] == "edit"
    assert [e["kind"] for e in got["events"]] == ["assignment.created", "review.submitted", "item.transition"]
    page = client.get(f"/items/{item_id}", headers=root["auth"]).text
    assert "Diff to v1" in page and "<ins> 300 mg chewed</ins>" in page and "user:alice" in page


def test_status_is_what_the_cli_prints(client, seed, db_url):
    from clinreason.cli import app as cli

    alice = seed.user("alice")
    seed.item()
    seed.item(state="accepted")
    got = client.get("/api/status", headers=alice["auth"]).json()
    printed = CliRunner().invoke(cli, ["status", "--json", "--db", db_url, "--config", "/nonexistent.toml"])
    assert printed.exit_code == 0, printed.output
    assert got == json.loads(printed.output)
    assert got["by_state"]["in_review"] == 1 and got["items"] == 2


def test_untrusted_question_and_rationale_are_inert_in_the_html(client, seed):
    alice = seed.user("alice")
    item_id, _ = seed.item(question="Q " + EVIL, rationale_text="R " + EVIL + "\n\nFinal answer: A",
                           options=[["A", "opt " + EVIL], ["B", "plain"]])
    client.get("/api/queue/next", headers=alice["auth"])
    for html in (client.get("/review", headers=alice["auth"]).text,
                 client.get(f"/items/{item_id}", headers=alice["auth"]).text):
        body = html.split('<main id="main">', 1)[1]
        tags = _tags(body)
        assert not [t for t, _ in tags if t in ("script", "img", "iframe", "object")]
        assert not [(t, a) for t, attrs in tags for a, _ in attrs if a.startswith("on")]
        assert not [(t, v) for t, attrs in tags for a, v in attrs
                    if a in ("href", "src", "action") and (v or "").strip().lower().startswith("javascript")]
        assert "&lt;script&gt;" in body


def test_admin_edits_the_rubric_into_a_new_version_used_by_new_reviews(client, seed):
    root, alice = seed.user("root", role="admin"), seed.user("alice")
    seed.item()
    body = json.loads(json.dumps(DEFAULT_RUBRIC_DICT))
    body["dimensions"] = body["dimensions"][:2]
    r = client.put("/api/admin/rubric", json={"body": body}, headers=root["auth"])
    assert r.status_code == 200 and r.json() == {"version": 2}
    bad = client.put("/api/admin/rubric", json={"body": {"dimensions": []}}, headers=root["auth"])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "body"]
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    r = client.post(f"/api/assignments/{aid}/review", headers=alice["auth"],
                    json={"verdict": "accept", "scores": {"correctness": 5, "reasoning": 4}})
    assert r.status_code == 201
    assert client.get("/api/admin/rubric", headers=root["auth"]).json()["versions"][0]["version"] == 2


def test_admin_pages_change_things_with_csrf(client, seed):
    seed.user("root", role="admin")
    browser_login(client, "root")
    page = client.get("/admin/rubric")
    text = json.dumps({**DEFAULT_RUBRIC_DICT, "require_all_accept": False})
    r = client.post("/admin/rubric", data={"csrf_token": csrf_of(page.text), "rubric": text})
    assert r.status_code == 200 and "Saved as version 2" in r.text
    r = client.post("/admin/rubric", data={"csrf_token": csrf_of(page.text), "rubric": "{not json"})
    assert r.status_code == 422 and "not valid JSON" in r.text
    r = client.post("/admin/users", data={"csrf_token": csrf_of(page.text), "username": "carol", "role": "reviewer",
                                          "specialties": "cardiology, neurology", "password": "long-enough-pw"},
                    follow_redirects=True)
    assert r.status_code == 200 and "cardiology, neurology" in r.text
    r = client.post("/admin/users", data={"csrf_token": csrf_of(page.text), "username": "dave", "role": "wizard",
                                          "password": "long-enough-pw"})
    assert r.status_code == 422 and "role" in r.text


def test_admin_imports_an_uploaded_file(client, seed, tmp_path):
    from clinreason.demo import samples_dir

    root = seed.user("root", role="admin")
    data = (samples_dir() / "medqa_sample.jsonl").read_bytes()
    r = client.post("/api/admin/import", headers=root["auth"], files={"file": ("medqa_sample.jsonl", data)},
                    data={"format": "medqa"})
    assert r.status_code == 200 and r.json()["added"] == 8
    r = client.post("/api/admin/import", headers=root["auth"], files={"file": ("bad.jsonl", b'{"question": ""}\n')},
                    data={"format": "medqa"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]
    browser_login(client, "root")
    token = csrf_of(client.get("/admin/import").text)
    r = client.post("/admin/import", data={"csrf_token": token, "format": "auto"},
                    files={"file": ("medqa_sample.jsonl", data)})
    assert r.status_code == 200 and "added <strong>0</strong>" in r.text
    assert client.get("/api/status", headers=root["auth"]).json()["items"] == 8


def test_an_upload_with_integer_answers_names_its_base(client, seed):
    """A generic file whose answers are bare integers is refused until the upload says how they count
    (as `clinreason import --answer-base`), from the API and from the page; then the gold is the right option."""
    import json as _json

    root = seed.user("root", role="admin")
    rows = [{"question": f"Which drug is a loop diuretic? ({i})", "options": ["Aspirin", "Furosemide", "Heparin"],
             "answer": 2} for i in range(3)]
    data = "".join(_json.dumps(r) + "\n" for r in rows).encode()
    refused = client.post("/api/admin/import", headers=root["auth"], files={"file": ("bank.jsonl", data)},
                          data={"format": "jsonl"})
    assert refused.status_code == 422 and "answer-base" in refused.json()["detail"][0]["msg"]
    bad = client.post("/api/admin/import", headers=root["auth"], files={"file": ("bank.jsonl", data)},
                      data={"format": "jsonl", "answer_base": "2"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "answer_base"]
    assert client.get("/api/status", headers=root["auth"]).json()["items"] == 0
    ok = client.post("/api/admin/import", headers=root["auth"], files={"file": ("bank.jsonl", data)},
                     data={"format": "jsonl", "answer_base": "1"})
    assert ok.status_code == 200 and ok.json()["added"] == 3
    from clinreason.store.items import project_items

    with seed.engine.begin() as conn:
        stored = project_items(conn, project_id=seed.project["id"])
    assert {tuple(dict(i.options)[a] for a in i.answer_labels) for i in stored} == {("Furosemide",)}  # 2 counted from 1 is the second option
    browser_login(client, "root")
    page = client.get("/admin/import").text
    assert 'name="answer_base"' in page
    other = "".join(_json.dumps({**r, "question": r["question"] + " again"}) + "\n" for r in rows).encode()
    r = client.post("/admin/import", data={"csrf_token": csrf_of(page), "format": "jsonl", "answer_base": "0"},
                    files={"file": ("other.jsonl", other)})
    assert r.status_code == 200 and client.get("/api/status", headers=root["auth"]).json()["items"] == 6


def test_dashboard_and_adjudication_pages(client, seed):
    root = seed.user("root", role="admin")
    seed.item(state="escalated", question="Escalated question about warfarin")
    assert "Escalated question about warfarin" in client.get("/adjudicate", headers=root["auth"]).text
    page = client.get("/dashboard", headers=root["auth"]).text
    assert 'data-state="escalated"' in page and '<strong id="n-items">1</strong>' in page


def test_openapi_documents_the_contract(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/login", "/api/queue/next", "/api/assignments/{assignment_id}/review", "/api/items/{item_id}",
                 "/api/status"):
        assert path in paths, path
    assert "201" in paths["/api/assignments/{assignment_id}/review"]["post"]["responses"]
