"""The review screen over plain HTTP (no JavaScript): what a form post does, autosave, the live diff."""

from __future__ import annotations

from sqlalchemy import select

from clinreason.store.tables import review_drafts, reviews
from web.factories import SCORES, review_form, start_review

_form = review_form


def _start(client, seed, **item):
    item_id, _rid, aid, token, html = start_review(client, seed, **item)
    return item_id, aid, token, html


def test_review_screen_shows_question_gold_answer_rationale_checks_and_rubric(client, seed):
    _, _, _, html = _start(client, seed, question="A 60-year-old has crushing chest pain.",
                           rationale_text="**Step 1**: think of ACS.\n\nFinal answer: A")
    assert "A 60-year-old has crushing chest pain." in html
    assert 'class="gold"' in html and "Gold answer: <strong>A</strong>" in html
    assert "<strong>Step 1</strong>" in html, "the rationale's Markdown is rendered"
    assert "answer_matches_gold" in html and "judge 4.0" in html, "checks and the judge pre-score as hints"
    for name in SCORES:
        assert f'name="score.{name}"' in html
    assert "Dangerous or wrong" in html, "anchor descriptions are on the page (shown on demand)"


def test_form_submission_stores_the_review_and_opens_the_next_item(client, seed, engine):
    _, aid, token, _ = _start(client, seed)
    seed.item()
    r = client.post(f"/review/{aid}/submit", data=_form(token, "accept", **{"comment.reasoning": "clear"}),
                    follow_redirects=True)
    assert r.status_code == 200 and "Review saved." in r.text and 'id="review-form"' in r.text
    with engine.connect() as conn:
        row = conn.execute(select(reviews)).mappings().one()
    assert row["scores"] == SCORES and row["comments"] == {"reasoning": "clear"} and row["seconds_spent"] == 42


def test_missing_score_redisplays_the_form_with_everything_typed_kept(client, seed, engine):
    _, aid, token, _ = _start(client, seed)
    partial = {k: v for k, v in SCORES.items() if k != "terminology"}
    r = client.post(f"/review/{aid}/submit", data=_form(token, "accept", partial, **{"comment.general": "keep me"}))
    assert r.status_code == 422 and "scores.terminology" in r.text and "keep me" in r.text
    assert 'value="5" id="score-correctness-5" checked' in r.text
    with engine.connect() as conn:
        assert conn.execute(select(reviews)).first() is None
        assert conn.execute(select(review_drafts.c.body)).scalar_one()["comments"]["general"] == "keep me"


def test_an_edit_is_never_silently_dropped(client, seed, engine):
    _, aid, token, html = _start(client, seed, rationale_text="Old text.\nFinal answer: A")
    r = client.post(f"/review/{aid}/submit", data=_form(token, "accept", edited_text="New text.\nFinal answer: A"))
    assert r.status_code == 422 and "edited_text" in r.text and "New text." in r.text
    r = client.post(f"/review/{aid}/submit", data=_form(token, "edit", edited_text="New text.\nFinal answer: A"),
                    follow_redirects=True)
    assert "saved as a new version" in r.text
    with engine.connect() as conn:
        assert conn.execute(select(reviews.c.edited_text)).scalar_one() == "New text.\nFinal answer: A"


def test_autosave_and_reload_restores_the_draft(client, seed):
    _, aid, token, _ = _start(client, seed)
    r = client.post(f"/review/{aid}/draft", data={"csrf_token": token, "score.correctness": "2",
                                                  "comment.correctness": "dose is wrong", "seconds_spent": "17"})
    assert r.status_code == 200 and "Draft saved" in r.text
    page = client.get("/review").text
    assert "dose is wrong" in page and 'value="2" id="score-correctness-2" checked' in page
    assert 'id="seconds" value="17"' in page and "Draft restored" in page


def test_live_diff_fragment(client, seed):
    _, aid, token, _ = _start(client, seed, rationale_text="Give aspirin.\nFinal answer: A")
    r = client.post(f"/review/{aid}/diff", data={"csrf_token": token, "edited_text": "Give aspirin 300 mg.\nFinal answer: A"},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<ins> 300 mg</ins>" in r.text and "<html" not in r.text


def test_skip_gives_the_item_back(client, seed):
    _, aid, token, _ = _start(client, seed)
    r = client.post(f"/review/{aid}/release", data={"csrf_token": token}, follow_redirects=True)
    assert "Item given back to the pool." in r.text
    r = client.post("/review/next", data={"csrf_token": token}, follow_redirects=True)
    assert "Nothing to review for you right now" in r.text
