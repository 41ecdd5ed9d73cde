"""Property-based fuzzing of the JSON API's bodies: always a 2xx/4xx with a reason, never a 500."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

junk = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(),
                              st.text(max_size=20)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=5)), max_leaves=10)
review_bodies = st.one_of(junk, st.fixed_dictionaries(
    {"verdict": st.one_of(st.sampled_from(["accept", "edit", "regenerate", "flag_question"]), junk)},
    optional={"scores": st.one_of(junk, st.dictionaries(st.sampled_from(
        ["correctness", "reasoning", "sufficiency", "terminology", "clinical_value", "x"]),
        st.one_of(st.integers(-3, 9), junk), max_size=6)), "comments": junk, "edited_text": junk,
        "seconds_spent": junk}))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=review_bodies)
def test_review_bodies_never_crash_the_server(client, seed, body):
    reviewer = seed.user("fuzzer") if not hasattr(seed, "_fuzzer") else seed._fuzzer
    seed._fuzzer = reviewer
    seed.item()
    nxt = client.get("/api/queue/next", headers=reviewer["auth"])
    assert nxt.status_code in (200, 204)
    if nxt.status_code == 204:
        return
    # sent as raw JSON text, Infinity and NaN included: what a careless script would send
    r = client.post(f"/api/assignments/{nxt.json()['assignment_id']}/review", content=json.dumps(body),
                    headers={**reviewer["auth"], "Content-Type": "application/json"})
    assert r.status_code in (201, 409, 422), (r.status_code, r.text[:300])
    if r.status_code == 422:
        assert r.json().get("detail")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=junk)
def test_login_and_adjudication_bodies_never_crash_the_server(client, seed, body):
    raw = {"content": json.dumps(body), "headers": {"Content-Type": "application/json"}}
    assert client.post("/api/login", **raw).status_code in (400, 401, 422, 429)
    judge = seed._judge if hasattr(seed, "_judge") else seed.user("fuzz-judge", role="adjudicator")
    seed._judge = judge
    r = client.post("/api/items/none/adjudication", content=raw["content"],
                    headers={**judge["auth"], **raw["headers"]})
    assert r.status_code in (404, 409, 422), (r.status_code, r.text[:300])
