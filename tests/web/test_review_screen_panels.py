"""What the review screen shows besides the rationale: the model's reasoning trace (folded, marked as scratch
work, sanitised), the bank's reference explanation under `[review] show_reference`, the reviewer's own
progress, the item's specialty and sources, and the final answer once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, update

from clinreason.store.common import now
from clinreason.store.tables import assignments, item_sources, items, projects
from web import factories
from web.factories import SCORES, browser_login, csrf_of

REASONING = "Hmm, ACS? <script>alert('think')</script> <img src=x onerror=alert(1)> **aspirin** then."
REFERENCE = "Aspirin 300 mg chewed reduces mortality in ACS. <img src=x onerror=alert(2)>"


def _set_review_config(seed, **values):
    config = dict(seed.project["config"])
    config["review"] = {**config.get("review", {}), **values}
    with seed.engine.begin() as conn:
        conn.execute(update(projects).where(projects.c.id == seed.project["id"]).values(config=config))
    seed.project["config"] = config


def _item(seed, *, reasoning=None, reference=None, steps=None, **kwargs):
    """An item in review; with `reasoning` (or `steps`), its current version is a model's v2 stored as the
    generate stage stores one: the parsed steps and final answer, and the model's reasoning beside them."""
    from clinreason.store import items as item_store
    from clinreason.store import rationales as rationale_store
    from clinreason.store.rationales import NewVersion

    item_id, rid = seed.item(**kwargs)
    with seed.engine.begin() as conn:
        if reference is not None:
            conn.execute(update(items).where(items.c.id == item_id).values(reference_explanation=reference))
        if reasoning is not None or steps is not None:
            item = item_store.get_item(conn, project_id=seed.project["id"], item_id=item_id)
            text = kwargs.get("rationale_text") or "Step 1: ACS.\nStep 2: aspirin first.\nFinal answer: A"
            parsed = {"steps": steps if steps is not None else text.splitlines(), "final_answer": ["A"]}
            rid = rationale_store.add_version(conn, NewVersion(item=item, origin="regenerated", author="model:fake",
                                                               text=text, parsed=parsed, reasoning=reasoning)).id
    return item_id, rid


def _lease(client, user):
    r = client.get("/api/queue/next", headers=user["auth"])
    assert r.status_code == 200, r.text
    return r.json()


def _submit(client, user, aid):
    r = client.post(f"/api/assignments/{aid}/review", headers=user["auth"], json={"verdict": "accept", "scores": SCORES})
    assert r.status_code == 201, r.text


# --- the model's reasoning trace ------------------------------------------------------------------------

def test_the_reasoning_trace_is_folded_marked_as_scratch_work_and_sanitised(client, seed):
    alice = seed.user("alice")
    item_id, _ = _item(seed, reasoning=REASONING)
    payload = _lease(client, alice)
    assert payload["rationale"]["reasoning"] == REASONING, "the API gives it too"
    html = client.get("/review", headers=alice["auth"]).text
    panel = html.split('<details class="reasoning" id="reasoning">', 1)[1].split("</details>", 1)[0]
    assert "Model's reasoning trace (scratch work, not part of the rationale)" in panel
    assert "<strong>aspirin</strong>" in panel, "rendered like the rationale (Markdown, sanitised)"
    assert "<script>" not in panel and "&lt;script&gt;" in panel, "markup in model output stays text"
    assert "<img" not in panel and "&lt;img src=x onerror=alert(1)&gt;" in panel
    assert '<details class="reasoning" id="reasoning" open' not in html, "collapsed until opened"
    source = html.split('aria-label="Your review"', 1)[0]
    assert source.index('id="rationale"') < source.index('id="reasoning"'), "after the rationale, apart from it"
    page = client.get(f"/items/{item_id}", headers=alice["auth"]).text
    assert 'id="version-2-reasoning"' in page and "&lt;script&gt;" in page and "<script>alert" not in page


def test_no_reasoning_panel_without_a_trace(client, seed):
    alice = seed.user("alice")
    _item(seed, reasoning="   ")
    assert _lease(client, alice)["rationale"]["reasoning"] is None
    html = client.get("/review", headers=alice["auth"]).text
    assert 'id="reasoning"' not in html and "reasoning trace" not in html


# --- the bank's reference explanation -------------------------------------------------------------------

def _reference_seen(client, user, item_id, aid):
    """Where `user` meets the reference: the review screen, the item page, GET /api/items, the assignment."""
    return {
        "review": "Aspirin 300 mg chewed" in client.get("/review", headers=user["auth"]).text,
        "item_page": "Aspirin 300 mg chewed" in client.get(f"/items/{item_id}", headers=user["auth"]).text,
        "api_item": "reference_explanation" in client.get(f"/api/items/{item_id}", headers=user["auth"]).json(),
        "api_assignment": "reference_explanation" in client.get(f"/api/assignments/{aid}",
                                                                headers=user["auth"]).json()["item"],
    }


def test_after_submit_the_reference_appears_only_once_the_reviewers_own_review_is_in(client, seed):
    alice, root = seed.user("alice"), seed.user("root", role="admin")
    item_id, _ = _item(seed, reference=REFERENCE)
    payload = _lease(client, alice)
    assert "reference_explanation" not in payload["item"], "not in /api/queue/next before the review"
    assert _reference_seen(client, alice, item_id, payload["assignment_id"]) == {
        "review": False, "item_page": False, "api_item": False, "api_assignment": False}
    _submit(client, alice, payload["assignment_id"])
    assert _reference_seen(client, alice, item_id, payload["assignment_id"]) == {
        "review": False, "item_page": True, "api_item": True, "api_assignment": True}  # review screen: idle now
    page = client.get(f"/items/{item_id}", headers=root["auth"]).text
    assert 'id="reference"' in page, "adjudicators and admins always see it"
    assert "<img" not in page.split('id="reference"', 1)[1].split("</details>", 1)[0], "imported text is sanitised"


def test_after_submitting_on_the_page_the_reference_of_the_item_just_reviewed_is_shown(client, seed):
    seed.user("alice")
    item_id, _ = _item(seed, reference=REFERENCE)
    _item(seed)  # the next item, leased right after the submit
    browser_login(client, "alice")
    token = csrf_of(client.get("/review").text)
    page = client.post("/review/next", data={"csrf_token": token}, follow_redirects=True).text
    assert "Aspirin 300 mg chewed" not in page, "not before the review is in"
    aid = page.split('data-assignment="', 1)[1].split('"', 1)[0]
    done = client.post(f"/review/{aid}/submit", follow_redirects=True, data={
        "csrf_token": token, "verdict": "accept", **{f"score.{k}": str(v) for k, v in SCORES.items()}})
    assert "Review saved." in done.text and 'id="review-form"' in done.text, "the next item is open"
    box = done.text.split('id="last-review"', 1)[1].split("</section>", 1)[0]
    assert f'href="/items/{item_id}"' in box and 'id="last-reference"' in box and "Aspirin 300 mg chewed" in box
    # the parameter alone shows nothing: an item the reviewer has not reviewed gets no box
    other, _ = _item(seed, reference="Secret reference of another item.")
    html = client.get(f"/review?notice=submitted&done={other}").text
    assert 'id="last-review"' not in html and "Secret reference" not in html
    assert 'id="last-review"' not in client.get("/review?done=no-such-item").text


def test_never_keeps_the_reference_from_reviewers_everywhere_but_not_from_adjudicators(client, seed):
    _set_review_config(seed, show_reference="never")
    alice, judge = seed.user("alice"), seed.user("judy", role="adjudicator")
    item_id, _ = _item(seed, reference=REFERENCE)
    payload = _lease(client, alice)
    _submit(client, alice, payload["assignment_id"])
    assert _reference_seen(client, alice, item_id, payload["assignment_id"]) == {
        "review": False, "item_page": False, "api_item": False, "api_assignment": False}
    assert "Aspirin 300 mg chewed" not in client.get(f"/review?notice=submitted&done={item_id}",
                                                     headers=alice["auth"]).text
    assert client.get(f"/api/items/{item_id}", headers=judge["auth"]).json()["reference_explanation"] == REFERENCE
    assert "Aspirin 300 mg chewed" in client.get(f"/items/{item_id}", headers=judge["auth"]).text


def test_always_shows_the_reference_on_the_review_screen_from_the_start(client, seed):
    _set_review_config(seed, show_reference="always")
    alice = seed.user("alice")
    item_id, _ = _item(seed, reference=REFERENCE)
    payload = _lease(client, alice)
    assert payload["item"]["reference_explanation"] == REFERENCE
    html = client.get("/review", headers=alice["auth"]).text
    panel = html.split('<details class="reference" id="reference">', 1)[1].split("</details>", 1)[0]
    assert "The question bank's reference explanation" in panel and "Aspirin 300 mg chewed" in panel
    assert "<img" not in panel


def test_no_reference_panel_when_the_item_has_none(client, seed):
    _set_review_config(seed, show_reference="always")
    alice = seed.user("alice")
    _item(seed)
    assert "reference_explanation" not in _lease(client, alice)["item"]
    assert 'id="reference"' not in client.get("/review", headers=alice["auth"]).text


# --- the reviewer's own progress ------------------------------------------------------------------------

AT = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)  # a Wednesday


def test_progress_counts_today_this_week_and_the_median_time(client, seed, engine):
    from clinreason.domain.records import Review
    from clinreason.store import reviews as review_store
    from clinreason.web import views
    from clinreason.web.auth import Principal

    alice = seed.user("alice")
    when = [(datetime(2026, 3, 11, 0, 5, tzinfo=UTC), 90),   # today (UTC)
            (datetime(2026, 3, 9, 8, 0, tzinfo=UTC), 10),    # Monday: this week
            (datetime(2026, 3, 8, 23, 59, tzinfo=UTC), 20)]  # Sunday: last week
    with engine.begin() as conn:  # reviews stored as the stage stores them, at the times given
        for n, (at, seconds) in enumerate(when):
            item_id, rid = factories.make_item(conn, project_id=seed.project["id"])
            review_store.add_review(conn, Review(id=f"rev{n}", rationale_id=rid, item_id=item_id,
                                                 reviewer_id=alice["id"], verdict="accept", scores=SCORES,
                                                 seconds_spent=seconds, created_at=at))
    _item(seed)  # still waiting for her
    me = Principal(user_id=alice["id"], username="alice", role="reviewer", specialties=(),
                   project_id=seed.project["id"], project="default", via="token", credential="x")
    with engine.connect() as conn:
        got = views.reviewer_progress(conn, me, at=AT)
    assert got == {"reviews": 3, "hours": 0.03, "today": 1, "this_week": 2, "waiting": 1, "specialties": [],
                   "median_seconds": 20}
    with engine.connect() as conn:
        fresh = views.reviewer_progress(conn, replace(me, user_id=seed.user("bob")["id"], username="bob"), at=AT)
    assert fresh["reviews"] == 0 and fresh["median_seconds"] is None and fresh["waiting"] == 4


def test_waiting_counts_only_items_of_the_reviewers_specialties_that_they_could_still_take(client, seed, engine):
    alice = seed.user("alice", specialties=["Cardiology"])
    _item(seed, specialty="Cardiology")                                   # waiting
    _item(seed, specialty="cardiology")                                   # waiting (case does not matter)
    _item(seed, specialty="Neurology")                                    # another specialty
    _item(seed, specialty="Cardiology", author="user:alice")              # her own edit
    _item(seed, specialty="Cardiology", state="accepted")                 # not in review
    full, full_rid = _item(seed, specialty="Cardiology")                  # both slots leased by others
    bob, carol = seed.user("bob"), seed.user("carol")
    with engine.begin() as conn:
        for n, who in enumerate((bob, carol)):
            conn.execute(insert(assignments).values(id=f"lease{n}", rationale_id=full_rid, item_id=full,
                                                    reviewer_id=who["id"], status="open", created_at=now(),
                                                    expires_at=now() + timedelta(minutes=30)))
    html = client.get("/review", headers=alice["auth"]).text
    assert 'id="progress-waiting">2</dd>' in html
    assert "Waiting in your specialty (Cardiology)" in html
    _lease(client, alice)  # the one she holds is no longer waiting
    html = client.get("/review", headers=alice["auth"]).text
    box = html.split('id="my-progress"', 1)[1].split("</section>", 1)[0]
    assert 'id="progress-waiting">1</dd>' in box and 'id="progress-today">0</dd>' in box
    assert 'id="progress-median">—</dd>' in box


def test_progress_on_the_review_screen_in_chinese(client, seed, engine):
    from clinreason.web import auth

    alice = seed.user("alice")
    with engine.begin() as conn:
        auth.set_language(conn, user_id=alice["id"], language="zh")
    _item(seed)
    _item(seed)
    aid = _lease(client, alice)["assignment_id"]
    client.post(f"/api/assignments/{aid}/review", headers=alice["auth"],
                json={"verdict": "accept", "scores": SCORES, "seconds_spent": 42})
    _lease(client, alice)
    html = client.get("/review", headers=alice["auth"]).text
    box = html.split('id="my-progress"', 1)[1].split("</section>", 1)[0]
    assert "今日审核" in box and "本周审核" in box and "等待您审核" in box and "每次审核用时中位数" in box
    assert 'id="progress-today">1</dd>' in box and 'id="progress-median">42 秒</dd>' in box


# --- where the item comes from; the final answer once --------------------------------------------------

def test_the_specialty_and_the_sources_are_at_the_top_of_the_review_screen(client, seed, engine):
    alice = seed.user("alice")
    item_id, _ = _item(seed, specialty="Cardiology")
    with engine.begin() as conn:
        for n, source in enumerate(("medqa", "cmexam")):
            conn.execute(insert(item_sources).values(item_id=item_id, source=source, subject="Internal medicine",
                                                     file=f"{source}.jsonl", record=str(12 + n), license="MIT",
                                                     imported_at=now()))
    payload = _lease(client, alice)
    assert [s["source"] for s in payload["item"]["sources"]] == ["medqa", "cmexam"]
    html = client.get("/review", headers=alice["auth"]).text
    top = html.split('id="question"', 1)[0]
    assert 'id="item-specialty">Specialty: Cardiology</span>' in top
    assert "Sources:" in top and "medqa · Internal medicine (medqa.jsonl #12)" in top and "(cmexam.jsonl #13)" in top


def test_an_item_without_specialty_or_source_says_so(client, seed):
    alice = seed.user("alice")
    _item(seed)
    assert _lease(client, alice)["item"]["sources"] == []
    html = client.get("/review", headers=alice["auth"]).text
    assert "No specialty given" in html and "No source recorded" in html


@pytest.mark.parametrize("text, steps", [
    ("Step 1: ACS.\nStep 2: aspirin first.\nFinal answer: A", True),   # the last step says it
    ("Aspirin first, because ACS.", False),                            # no steps: the text, then the answer
])
def test_the_final_answer_is_shown_once_in_either_language(client, seed, engine, text, steps):
    alice = seed.user("alice")
    _item(seed, rationale_text=text, steps=None if steps else [])
    _lease(client, alice)
    en = client.get("/review", headers={**alice["auth"], "Accept-Language": "en"}).text.split('class="pane scoring"')[0]
    zh = client.get("/review", headers={**alice["auth"], "Accept-Language": "zh-CN"}).text.split('class="pane scoring"')[0]
    if steps:  # the step is the answer line (user data, as written): it is not repeated, in neither language
        assert en.count("Final answer: A") == 1 and zh.count("Final answer: A") == 1 and "最终答案" not in zh
    else:
        assert en.count('<p class="final">Final answer: <strong>A</strong></p>') == 1
        assert zh.count('<p class="final">最终答案：<strong>A</strong></p>') == 1 and "Final answer" not in zh
