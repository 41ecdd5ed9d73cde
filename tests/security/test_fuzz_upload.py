"""The web upload of a question bank (POST /api/admin/import, and the /admin/import page) fuzzed with
hypothesis: whatever the body holds, the answer is 200 or a clear 4xx naming what is wrong — never a 500
or a traceback — and a refused upload writes nothing. An upload over the size limit is refused with 413
before the body is read (by its Content-Length) or as soon as it passes the limit (a body sent without one)."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from web.factories import browser_login, csrf_of

from clinreason.stages.ingest_formats import FORMATS
from clinreason.store.tables import events, item_sources, items

FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
GOOD_LINE = {"question": "Which drug?", "options": {"A": "aspirin", "B": "heparin"}, "answer": "A"}


def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (items, item_sources,
                                                                                                 events))


json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 9) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=6)
contents = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.fixed_dictionaries({}, optional={k: json_values for k in ("question", "options", "answer")})
                       .map(json.dumps), st.just(json.dumps(GOOD_LINE)), st.text(max_size=30)), max_size=4)
    .map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    st.just(b"question,options,answer\nWhich drug?,\"A x\\nB y\",A\n"),
)
file_names = st.one_of(st.text(max_size=20), st.sampled_from(["bank.jsonl", "../../etc/passwd", "..", ".", "/abs.csv",
                                                             "a/b/c.json", "bank.parquet", "x.xlsx", "bank_hf",
                                                             "README", "\x00.jsonl", "名.jsonl"]))
formats = st.one_of(st.sampled_from(FORMATS), st.text(string.printable, max_size=8))
sources = st.one_of(st.none(), st.text(max_size=12), st.just("s" * 150), st.just("med\x00qa"))


def _check_answer(r, before, engine) -> None:
    assert r.status_code in (200, 400, 413, 422), (r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    if r.status_code == 200:
        assert _counts(engine)[0] == before[0] + r.json()["added"]
        return
    detail = r.json()["detail"]
    message = detail if isinstance(detail, str) else detail[0]["msg"]
    assert message and "\n" not in message, detail
    if r.status_code == 422 and isinstance(detail, list):
        assert detail[0]["loc"][0] == "body" and detail[0]["loc"][1] in ("file", "format", "source"), detail
    assert _counts(engine) == before, "a refused upload wrote something"


@FUZZ
@given(content=contents, name=file_names, fmt=formats, source=sources)
@example(content=json.dumps(GOOD_LINE).encode(), name="bank.jsonl", fmt="auto", source=None)
@example(content=json.dumps(GOOD_LINE).encode(), name="bank.jsonl", fmt="jsonl", source="s" * 150)
@example(content=json.dumps(GOOD_LINE).encode(), name="bank.jsonl", fmt="nope", source=None)
@example(content=b'{"question": "q", "options": "{\\"A\\": \\"x\\"}", "answer": "A"}', name="b.jsonl", fmt="jsonl",
         source=None)
def test_any_uploaded_file_is_imported_or_refused_with_a_4xx(client, seed, engine, content, name, fmt, source):
    root = seed.user("root", role="admin") if not hasattr(seed, "root") else seed.root
    seed.root = root
    data = {"format": fmt} | ({"source": source} if source is not None else {})
    before = _counts(engine)
    try:
        r = client.post("/api/admin/import", headers=root["auth"], files={"file": (name, content)}, data=data)
    except UnicodeEncodeError:  # the client itself cannot put a lone surrogate into a form field
        return
    _check_answer(r, before, engine)


raw_bodies = st.one_of(
    st.tuples(st.sampled_from(["multipart/form-data; boundary=xyz", "multipart/form-data", "application/json",
                               "text/plain", "application/x-www-form-urlencoded", ""]), st.binary(max_size=200)),
    st.tuples(st.just("multipart/form-data; boundary=xyz"),
              st.sampled_from([b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--xyz--\r\n",
                               b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n"
                               b"{}\r\n--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\""
                               b"\r\n\r\n{}\r\n--xyz--\r\n",
                               b"--xyz\r\nContent-Disposition: form-data; name=\"format\"; filename=\"f\"\r\n\r\n"
                               b"jsonl\r\n--xyz--\r\n",
                               b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n"
                               b"{}",  # never closed
                               b"--other\r\n\r\n"])))


@FUZZ
@given(body=raw_bodies)
def test_any_raw_body_gets_a_4xx_never_a_500(client, seed, engine, body):
    root = seed.user("root", role="admin") if not hasattr(seed, "root") else seed.root
    seed.root = root
    content_type, payload = body
    before = _counts(engine)
    r = client.post("/api/admin/import", headers={**root["auth"], "Content-Type": content_type}, content=payload)
    assert r.status_code in (400, 413, 422), (r.status_code, r.text[:300])
    _check_answer(r, before, engine)


@pytest.fixture
def small_limit(web_app):
    web_app.state.web.settings.max_upload_bytes = 4096
    return 4096


def _bank(n_bytes: int) -> bytes:
    lines, size, i = [], 0, 0
    while size < n_bytes:
        line = json.dumps({**GOOD_LINE, "question": f"Which drug {i}?"}) + "\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines).encode()


def test_an_upload_over_the_limit_is_refused_with_413(client, seed, engine, small_limit):
    root = seed.user("root", role="admin")
    before = _counts(engine)
    r = client.post("/api/admin/import", headers=root["auth"], files={"file": ("bank.jsonl", _bank(3 * small_limit))})
    assert r.status_code == 413 and "larger than the limit" in r.json()["detail"]
    assert _counts(engine) == before
    r = client.post("/api/admin/import", headers=root["auth"], files={"file": ("bank.jsonl", _bank(small_limit // 2))})
    assert r.status_code == 200 and r.json()["added"] > 0


async def test_the_body_is_read_no_further_than_the_limit(web_app):
    """A declared Content-Length over the limit is refused before a byte of the body is received; a body
    sent without one (chunked) is cut off as soon as it passes the limit, not read to its end."""
    from fastapi import HTTPException
    from starlette.requests import Request

    from clinreason.web import api_admin

    web_app.state.web.settings.max_upload_bytes = 4096
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="b.jsonl"\r\n\r\n'
    received: list[int] = []

    async def receive():
        received.append(len(received))
        return {"type": "http.request", "body": head if len(received) == 1 else b"y" * 1024,
                "more_body": len(received) < 1000}

    def request(*extra_headers):
        return Request({"type": "http", "method": "POST", "path": "/api/admin/import", "query_string": b"",
                        "headers": [(b"content-type", b"multipart/form-data; boundary=xyz"), *extra_headers],
                        "app": web_app}, receive)

    with pytest.raises(HTTPException) as refused:
        await api_admin.read_upload_form(request((b"content-length", str(10 ** 12).encode())))
    assert refused.value.status_code == 413 and received == []
    with pytest.raises(HTTPException) as refused:
        await api_admin.read_upload_form(request())
    assert refused.value.status_code == 413 and len(received) <= 6, f"{len(received)} chunks of 1000 read"


def test_an_unauthenticated_upload_is_refused_before_the_body_is_parsed(client, seed, engine):
    r = client.post("/api/admin/import", files={"file": ("bank.jsonl", _bank(1000))})
    assert r.status_code == 401
    reviewer = seed.user("rita")
    r = client.post("/api/admin/import", headers=reviewer["auth"], files={"file": ("bank.jsonl", _bank(1000))})
    assert r.status_code == 403


def test_the_admin_page_refuses_an_oversized_upload_too(client, seed, engine, small_limit):
    seed.user("root", role="admin")
    browser_login(client, "root")
    token = csrf_of(client.get("/admin/import").text)
    before = _counts(engine)
    r = client.post("/admin/import", data={"csrf_token": token, "format": "auto"},
                    files={"file": ("bank.jsonl", _bank(3 * small_limit))})
    assert r.status_code == 413 and "larger than the limit" in r.text
    assert _counts(engine) == before
    # the JSON API with the browser session (CSRF token in the form) enforces it as well
    r = client.post("/api/admin/import", data={"csrf_token": token}, files={"file": ("bank.jsonl",
                                                                                    _bank(3 * small_limit))})
    assert r.status_code == 413
    r = client.post("/api/admin/import", data={"csrf_token": token}, files={"file": ("bank.jsonl", _bank(500))})
    assert r.status_code == 200 and r.json()["added"] > 0


def test_the_limit_comes_from_the_environment(monkeypatch, tmp_path):
    from clinreason.config import DEFAULT_MAX_UPLOAD_BYTES, resolve_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLINREASON_MAX_UPLOAD_MB", raising=False)
    assert resolve_settings().max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES
    monkeypatch.setenv("CLINREASON_MAX_UPLOAD_MB", "1.5")
    assert resolve_settings().max_upload_bytes == 1536 * 1024
