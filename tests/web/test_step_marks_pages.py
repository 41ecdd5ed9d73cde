"""Step marks on the review screen and the item page over plain HTTP: the form fields, autosave and restore,
a refused mark shown on the page with what was typed kept, blindness, and what changed between versions."""

from __future__ import annotations

import json

from sqlalchemy import select
from starlette.datastructures import FormData

from clinreason.store.tables import review_drafts, reviews
from clinreason.web.pages_review import form_steps, form_to_body
from web.factories import SCORES, browser_login, csrf_of, review_form, start_review

TEXT = ("Step 1: chest pain in a 60-year-old suggests acute coronary syndrome.\n"
        "Step 2: aspirin 75 mg is given first.\n"
        "Step 3: beta blockers come later.\n"
        "Final answer: A")
NOTE = "The loading dose is 300 mg chewed."


_form = review_form

_start = start_review


def _error_mark(n=2, **fields):
    mark = {f"step.{n}.verdict": "error", f"step.{n}.category": "factual_error", f"step.{n}.severity": "major",
            f"step.{n}.note": NOTE}
    mark.update({f"step.{n}.{k}": v for k, v in fields.items()})
    return {k: v for k, v in mark.items() if v is not None}


# --- the form fields -------------------------------------------------------------------------------------

def test_form_fields_become_the_apis_steps_list_by_step_number():
    form = FormData([
        ("step.3.verdict", "error"), ("step.3.category", "unsafe"), ("step.3.severity", "critical"),
        ("step.3.note", "  contraindicated in asthma\n"), ("step.3.correction", ""),
        ("step.1.verdict", "ok"),
        ("step.2.verdict", ""), ("step.2.note", ""),  # untouched: no mark
        ("step.12.verdict", "ok"),  # sorted as numbers, not as text
        ("step.x.verdict", "ok"), ("step.4.colour", "red"), ("steps", "junk"),  # not step fields
    ])
    assert form_steps(form) == [
        {"step": 1, "verdict": "ok"},
        {"step": 3, "verdict": "error", "category": "unsafe", "severity": "critical",
         "note": "  contraindicated in asthma\n"},  # the note as typed (validation trims it when submitted)
        {"step": 12, "verdict": "ok"},
    ]
    assert form_to_body(form)["steps"] == form_steps(form)
    assert form_to_body(FormData([("verdict", "accept")]))["steps"] == []


def test_text_typed_for_a_step_without_a_verdict_is_not_dropped():
    # the submit then says the verdict is missing, instead of losing the note without a word
    assert form_steps(FormData([("step.2.verdict", ""), ("step.2.note", "what about renal function?")])) == [
        {"step": 2, "note": "what about renal function?"}]


def test_the_review_screen_numbers_each_step_as_a_target_with_its_fields(client, seed):
    *_, html = _start(client, seed, rationale_text=TEXT)
    for n in (1, 2, 3, 4):
        assert f'id="step-{n}" data-step="{n}" tabindex="0" aria-label="Step {n}"' in html
        for field in ("verdict", "category", "severity", "note", "correction"):
            assert f'name="step.{n}.{field}"' in html
    assert 'form="review-form"' in html, "the step fields belong to the review form"
    assert "A medical fact is wrong" in html, "each category with its one-line description"
    source = html.split('aria-label="Your review"', 1)[0]  # the editor below holds the text again, to edit
    assert source.count("Final answer: A") == 1, "the last step is the final answer: it is not repeated"
    assert 'id="step-keys"' in html and "<kbd>x</kbd>" in html, "the help lists the step keys"


def test_a_final_answer_outside_the_steps_is_shown_once_below_them(client, seed, engine):
    from clinreason.store import items, rationales
    from clinreason.store.rationales import NewVersion

    seed.user("alice")
    item_id, _ = seed.item()
    with engine.begin() as conn:  # as a model's draft is stored: the numbers and the answer line apart
        rationales.add_version(conn, NewVersion(
            item=items.get_item(conn, project_id=seed.project["id"], item_id=item_id), origin="regenerated",
            author="model:fake-drafter", text="1. ACS.\n2. Aspirin first.\nFinal answer: A",
            parsed={"steps": ["ACS.", "Aspirin first."], "final_answer": ["A"]}))
    browser_login(client, "alice")
    token = csrf_of(client.get("/review").text)
    html = client.post("/review/next", data={"csrf_token": token}, follow_redirects=True).text
    assert "version 2" in html
    assert 'aria-label="Step 2"' in html and 'aria-label="Step 3"' not in html
    source = html.split('aria-label="Your review"', 1)[0]
    assert source.count('<p class="final">Final answer: <strong>A</strong></p>') == 1
    assert "The text as written" in html, "the text as the model wrote it stays at hand"


# --- autosave, submit, a refused mark ----------------------------------------------------------------------

def test_marks_are_autosaved_with_the_draft_and_restored(client, seed, engine):
    _, _, aid, token, _ = _start(client, seed, rationale_text=TEXT)
    r = client.post(f"/review/{aid}/draft", data={"csrf_token": token, "score.correctness": "2", "step.1.verdict": "ok",
                                                  **_error_mark(2, correction="Aspirin 300 mg chewed first.")})
    assert r.status_code == 200 and "Draft saved" in r.text
    with engine.connect() as conn:
        body = conn.execute(select(review_drafts.c.body)).scalar_one()
    assert body["steps"] == [{"step": 1, "verdict": "ok"},
                             {"step": 2, "verdict": "error", "category": "factual_error", "severity": "major",
                              "note": NOTE, "correction": "Aspirin 300 mg chewed first."}]
    page = client.get("/review").text
    assert "Draft restored" in page
    assert 'name="step.1.verdict" value="ok" id="step-1-ok" checked' in page
    assert 'name="step.2.verdict" value="error" id="step-2-error" checked' in page
    assert 'name="step.2.category" value="factual_error" checked' in page
    assert 'name="step.2.severity" value="major" checked' in page
    assert f">{NOTE}</textarea>" in page and ">Aspirin 300 mg chewed first.</textarea>" in page
    assert 'name="step.3.verdict" value="" checked' in page, "an unmarked step stays unmarked"
    assert 'id="editor" class="editor" hidden' in page or 'class="editor" hidden' in page


def test_a_draft_saved_over_the_api_restores_its_marks_on_the_page(client, seed):
    alice = seed.user("bob")
    seed.item(rationale_text=TEXT)
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    r = client.put(f"/api/assignments/{aid}/draft", headers=alice["auth"],
                   json={"scores": {}, "steps": [{"step": 3, "verdict": "error", "category": "unsafe", "note": "no"}]})
    assert r.status_code == 204
    page = client.get("/review", headers=alice["auth"]).text
    assert 'name="step.3.verdict" value="error" id="step-3-error" checked' in page
    assert 'name="step.3.category" value="unsafe" checked' in page


def test_submitted_marks_are_stored_on_the_review(client, seed, engine):
    _, rid, aid, token, _ = _start(client, seed, rationale_text=TEXT)
    r = client.post(f"/review/{aid}/submit", follow_redirects=True,
                    data=_form(token, "regenerate", **{"step.1.verdict": "ok"}, **_error_mark(2)))
    assert r.status_code == 200 and "Review saved." in r.text
    with engine.connect() as conn:
        steps = conn.execute(select(reviews.c.steps).where(reviews.c.rationale_id == rid)).scalar_one()
    assert steps == [{"step": 1, "verdict": "ok"},
                     {"step": 2, "verdict": "error", "category": "factual_error", "severity": "major", "note": NOTE}]


def test_an_error_mark_missing_its_note_is_refused_on_the_page_keeping_what_was_typed(client, seed, engine):
    _, _, aid, token, _ = _start(client, seed, rationale_text=TEXT)
    data = _form(token, "regenerate", **{"step.1.verdict": "ok", "comment.general": "keep me"},
                 **_error_mark(3, note=None, correction="Beta blockers only once stable."))
    r = client.post(f"/review/{aid}/submit", data=data)
    assert r.status_code == 422
    assert "steps[1].note: required with verdict &#39;error&#39;" in r.text, "the field is named"
    assert '<a href="#step-3">(step 3)</a>' in r.text and 'id="step-3-problem"' in r.text
    assert 'class="step marked-error invalid"' in r.text, "the refused step is highlighted"
    assert 'name="step.3.category" value="factual_error" checked' in r.text
    assert ">Beta blockers only once stable.</textarea>" in r.text and "keep me" in r.text
    assert 'name="step.1.verdict" value="ok" id="step-1-ok" checked' in r.text
    with engine.connect() as conn:
        assert conn.execute(select(reviews)).first() is None
        assert conn.execute(select(review_drafts.c.body)).scalar_one()["steps"][1]["correction"] == \
            "Beta blockers only once stable."


def test_a_mark_on_a_step_the_version_does_not_have_is_refused_naming_it(client, seed):
    _, _, aid, token, _ = _start(client, seed, rationale_text=TEXT)
    r = client.post(f"/review/{aid}/submit", data=_form(token, "accept", **{"step.9.verdict": "ok"}))
    assert r.status_code == 422 and "steps[0].step" in r.text and "out of range" in r.text


def test_an_unknown_category_is_refused(client, seed):
    _, _, aid, token, _ = _start(client, seed, rationale_text=TEXT)
    r = client.post(f"/review/{aid}/submit", data=_form(token, "regenerate", **_error_mark(2, category="vibes")))
    assert r.status_code == 422 and "steps[0].category" in r.text and "unknown category" in r.text


# --- blindness and the item page ---------------------------------------------------------------------------

def _review_with_marks(client, user, marks, verdict="regenerate"):
    aid = client.get("/api/queue/next", headers=user["auth"]).json()["assignment_id"]
    r = client.post(f"/api/assignments/{aid}/review", headers=user["auth"],
                    json={"verdict": verdict, "scores": SCORES, "steps": marks})
    assert r.status_code == 201, r.text
    return aid


def test_other_reviewers_marks_stay_hidden_until_ones_own_review_of_the_version_is_in(client, seed):
    alice, bob, root = seed.user("alice"), seed.user("bob"), seed.user("root", role="admin")
    item_id, _ = seed.item(rationale_text=TEXT)
    _review_with_marks(client, alice, [{"step": 2, "verdict": "error", "category": "factual_error",
                                        "severity": "critical", "note": NOTE, "correction": "300 mg chewed"}])
    bob_aid = client.get("/api/queue/next", headers=bob["auth"]).json()["assignment_id"]

    before = client.get(f"/api/items/{item_id}", headers=bob["auth"]).json()
    assert NOTE not in json.dumps(before) and "300 mg chewed" not in json.dumps(before)
    assert before["step_history"][0]["marks"] == [] and all(not s["marks"] for s in before["step_history"][0]["steps"])
    for path in (f"/items/{item_id}", "/review"):
        page = client.get(path, headers=bob["auth"]).text
        assert NOTE not in page and "300 mg chewed" not in page and "alice" not in page, path
    assert 'class="marks"' not in client.get(f"/items/{item_id}", headers=bob["auth"]).text

    client.post(f"/api/assignments/{bob_aid}/review", headers=bob["auth"], json={"verdict": "accept", "scores": SCORES})
    after = client.get(f"/api/items/{item_id}", headers=bob["auth"]).json()
    assert [m["reviewer"] for m in after["step_history"][0]["marks"]] == ["alice"]
    assert next(r for r in after["reviews"] if r["reviewer"] == "alice")["steps"][0]["note"] == NOTE
    page = client.get(f"/items/{item_id}", headers=bob["auth"]).text
    assert NOTE in page and "300 mg chewed" in page and "critical" in page

    admin = client.get(f"/items/{item_id}", headers=root["auth"]).text
    assert NOTE in admin, "adjudicators and admins see every mark"


def test_the_item_page_shows_what_changed_between_versions_and_escapes_marks(client, seed):
    alice, root = seed.user("alice"), seed.user("root", role="admin")
    item_id, _ = seed.item(rationale_text=TEXT)
    aid = client.get("/api/queue/next", headers=alice["auth"]).json()["assignment_id"]
    edited = ("Step 1: chest pain in a 60-year-old suggests acute coronary syndrome.\n"
              "Step 2: aspirin 300 mg chewed is given first.\n"
              "Step 3: nitrates relieve the pain.\n"
              "Step 4: beta blockers come later.\n"
              "Final answer: A")
    r = client.post(f"/api/assignments/{aid}/review", headers=alice["auth"], json={
        "verdict": "edit", "scores": SCORES, "edited_text": edited,
        "steps": [{"step": 2, "verdict": "error", "category": "factual_error", "severity": "major",
                   "note": "<script>alert(1)</script> wrong dose"}]})
    assert r.status_code == 201, r.text
    got = client.get(f"/api/items/{item_id}", headers=root["auth"]).json()
    v2 = got["step_history"][1]
    assert v2["version"] == 2 and v2["parent_version"] == 1
    assert v2["changes"] == {"changed": [2], "added": [3], "removed": []}
    assert got["step_history"][0]["changes"] is None
    page = client.get(f"/items/{item_id}", headers=root["auth"]).text
    assert 'id="version-2-step-changes"' in page and "1 changed (2)" in page and "1 added (3)" in page
    assert 'id="v2-step-2"' in page and 'class="step change-changed"' in page
    assert 'class="step change-added"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; wrong dose" in page and "<script>alert(1)" not in page
