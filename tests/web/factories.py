"""Test data written straight into the tables: users (with a cheap argon2 hash), tokens, items in review
with a rationale version and its checks. Keyword-only, one transaction per call chosen by the caller."""

from __future__ import annotations

import hashlib
import itertools
import re
import socket
import threading
import time
from typing import Any

from sqlalchemy import Connection, insert

from clinreason.config import ProjectConfig
from clinreason.store.common import now
from clinreason.store.projects import ensure_project
from clinreason.store.tables import checks, items, rationales

_counter = itertools.count(1)
PASSWORD = "correct horse battery"


def cheap_hash(password: str) -> str:
    """A valid argon2id hash with tiny cost parameters (verification is fast; login upgrades it)."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password)


_CHEAP = {}


def make_user(conn: Connection, *, username: str, role: str = "reviewer", specialties: list[str] | None = None,
              password: str = PASSWORD) -> dict[str, Any]:
    from clinreason.web import auth

    if password not in _CHEAP:
        _CHEAP[password] = cheap_hash(password)
    uid = auth.create_user(conn, username=username, role=role, password=password, specialties=specialties or [],
                           password_hash=_CHEAP[password])
    return {"id": uid, "username": username, "role": role, "password": password}


def make_token(conn: Connection, *, user_id: int, project_id: int) -> str:
    from clinreason.web import auth

    return auth.create_token(conn, user_id=user_id, project_id=project_id, kind="personal", name="test")


def make_project(conn: Connection, *, name: str) -> dict[str, Any]:
    pc = ProjectConfig(name=name)
    row, _ = ensure_project(conn, name=name, config=pc.model_dump(mode="json", exclude={"rubric"}),
                                 rubric=pc.rubric)
    return row


def make_item(conn: Connection, *, project_id: int, question: str | None = None,
              options: list[list[str]] | None = None, answer: list[str] | None = None, specialty: str | None = None,
              state: str = "in_review", rationale_text: str | None = None, final_answer: list[str] | None = None,
              author: str = "model:fake-drafter", check_rows: list[tuple[str, bool, float | None, str]] | None = None,
              item_id: str | None = None) -> tuple[str, str]:
    """An item with one generated rationale version (v1). Returns (item_id, rationale_id)."""
    n = next(_counter)
    item_id = item_id or f"item{n:05d}"
    ts = now()
    options = options if options is not None else [["A", "Aspirin"], ["B", "Beta blocker"], ["C", "Clopidogrel"]]
    conn.execute(insert(items).values(
        id=item_id, project_id=project_id, content_hash=hashlib.sha256(f"{project_id}:{item_id}".encode()).hexdigest(),
        question=question or f"Question {n}: which drug first for a 60-year-old with chest pain?",
        options=options, answer_labels=answer or ["A"], language="en", specialty=specialty, meta={}, state=state,
        strikes=0, auto_retries=0, created_at=ts, updated_at=ts))
    rid = f"rat{n:05d}v1"
    text = rationale_text or ("Step 1: chest pain in a 60-year-old suggests acute coronary syndrome.\n"
                              "Step 2: aspirin reduces mortality and is given first.\n"
                              "Final answer: A")
    conn.execute(insert(rationales).values(
        id=rid, item_id=item_id, version=1, parent_version=None, origin="generated", author=author,
        steps=[line for line in text.splitlines() if line.strip()], final_answer=final_answer or ["A"], text=text,
        model="fake-drafter", params={}, parse_status="ok", prompt_tokens=10, completion_tokens=20, cost=0.0,
        created_at=ts))
    for name, passed, score, detail in check_rows if check_rows is not None else [
            ("answer_matches_gold", True, 1.0, "final answer A = gold A"), ("judge:correctness", True, 4.0, "fine")]:
        conn.execute(insert(checks).values(rationale_id=rid, name=name, passed=passed, blocking=False, score=score,
                                           detail=detail, created_at=ts))
    return item_id, rid


SCORES = {"correctness": 5, "reasoning": 4, "sufficiency": 4, "terminology": 5, "clinical_value": 4}


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def browser_login(client, username: str, password: str = PASSWORD):
    """Sign in through the login form like a browser; returns the final response."""
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_of(page.text),
                                       "next": ""}, follow_redirects=False)


class LiveServer:
    """The app on a real socket, served by uvicorn in a thread, for clients that speak real HTTP."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:  # readiness poll, not a timing assumption
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def review_form(token: str, verdict: str, scores: dict[str, int] = SCORES, **extra: str) -> dict[str, str]:
    """The review screen's form fields for a plain HTTP post: the verdict, every score, and `extra` fields."""
    data = {"csrf_token": token, "verdict": verdict, "seconds_spent": "42"}
    data.update({f"score.{k}": str(v) for k, v in scores.items()})
    data.update(extra)
    return data


def start_review(client, seed, **item) -> tuple[str, str, str, str, str]:
    """Reviewer alice signs in in the browser and takes a new item (made with `item`'s fields) from the
    review screen: (item_id, rationale_id, assignment_id, csrf_token, the review page's html)."""
    seed.user("alice")
    item_id, rid = seed.item(**item)
    browser_login(client, "alice")
    token = csrf_of(client.get("/review").text)
    page = client.post("/review/next", data={"csrf_token": token}, follow_redirects=True)
    assert 'id="review-form"' in page.text
    aid = page.text.split('data-assignment="', 1)[1].split('"', 1)[0]
    return item_id, rid, aid, token, page.text


def browser_sign_in(page, base: str, username: str, password: str = PASSWORD) -> None:
    """Sign in on /login in a Playwright page, as a person types it (Enter submits)."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    # wait for the form's own navigation (POST, then the redirect) to finish: waiting for "networkidle" alone
    # can return before the submission starts, and the caller's next goto then races the redirect
    # (net::ERR_ABORTED on whichever loses)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state("networkidle")
