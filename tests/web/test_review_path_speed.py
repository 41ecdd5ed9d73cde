"""The review path's shortcuts keep the answers exactly as they were: the assignment payload's bytes are
the ones FastAPI's own encoder gives."""

from __future__ import annotations

import json

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from clinreason.store import db as store_db
from clinreason.web import api_review, views
from clinreason.web.auth import principal_from_token


def test_the_assignment_payload_is_the_bytes_fastapi_would_send(client, seed, web_app):
    alice = seed.user("alice")
    seed.item(specialty="cardiology")
    r = client.get("/api/queue/next", headers=alice["auth"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    aid = r.json()["assignment_id"]
    # a draft with a comment key jsonable_encoder would drop ('_sa…'): the slow path, same bytes as before
    assert client.put(f"/api/assignments/{aid}/draft", json={"comments": {"_sample": "kept?", "general": "é ok"}},
                      headers=alice["auth"]).status_code == 204
    again = client.get(f"/api/assignments/{aid}", headers=alice["auth"])
    with store_db.reading(web_app.state.web.engine) as conn:
        principal = principal_from_token(conn, alice["token"])
        assert principal is not None
        payload = views.assignment_payload(conn, principal, aid)
    expected = JSONResponse(jsonable_encoder(payload)).body
    assert again.content == expected
    assert "_sample" not in again.json()["draft"]["body"]["comments"], "as FastAPI always answered"
    assert client.get("/api/queue/next", headers=alice["auth"]).content == expected


def test_plain_json_is_told_from_what_the_encoder_would_change():
    assert api_review._plain_json({"a": [1, 2.5, "x", None, True, {"b": []}]})
    assert not api_review._plain_json({"a": (1, 2)})
    assert not api_review._plain_json({"_sa_state": 1})
    assert not api_review._plain_json({1: "x"})
    assert not api_review._plain_json({"when": __import__("datetime").date(2025, 1, 1)})
    body = {"a": [1, 2.5, "é", None]}
    assert api_review._json_answer(body).body == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

