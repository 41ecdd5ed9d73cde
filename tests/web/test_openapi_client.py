"""A typed Python client generated from the served /openapi.json (openapi-python-client, offline, into
tmp_path; nothing of it is committed) does a reviewer's round over real HTTP: signs in, takes the next
item, submits a review and reads the item back, every answer parsed into the document's models.

Skipped, with a message, where openapi-python-client is not installed, except under CI=true, where that
is a failure (it is in the `dev` extra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from web.factories import PASSWORD, SCORES, LiveServer

PACKAGE = "clinreason_client"


def _generator() -> Path:
    exe = Path(sys.executable).with_name("openapi-python-client")
    if not exe.exists():
        message = f"{exe} is missing: pip install -e '.[dev]' (openapi-python-client) to run the generated-client test"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return exe


def generate_client(document: dict, where: Path) -> None:
    """`openapi-python-client generate` for `document` into where/clinreason_client. Offline: the generator
    reads the file and writes code, no post-hooks (no formatter is needed)."""
    spec, config = where / "openapi.json", where / "generator.json"
    spec.write_text(json.dumps(document), encoding="utf-8")
    config.write_text(json.dumps({"post_hooks": [], "package_name_override": PACKAGE}), encoding="utf-8")
    done = subprocess.run([str(_generator()), "generate", "--path", str(spec), "--output-path", str(where / PACKAGE),
                           "--meta", "none", "--config", str(config), "--fail-on-warning"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_PROXY": "*", "HTTP_PROXY": "", "HTTPS_PROXY": ""})
    assert done.returncode == 0, f"the generator refused the document:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def client_package(tmp_path):
    """The generated package, importable for one test (and forgotten after it)."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def test_a_generated_client_signs_in_reviews_and_reads_the_item_back(web_app, seed, client_package):
    _generator()
    seed.user("alice")
    item_id, rationale_id = seed.item()
    with LiveServer(web_app) as server:
        document = httpx.get(server.url + "/openapi.json").raise_for_status().json()
        generate_client(document, client_package)

        from clinreason_client import AuthenticatedClient, Client  # type: ignore[import-not-found]
        from clinreason_client.api.auth import login  # type: ignore[import-not-found]
        from clinreason_client.api.items import get_item  # type: ignore[import-not-found]
        from clinreason_client.api.review import queue_next, submit_review  # type: ignore[import-not-found]
        from clinreason_client.models import (  # type: ignore[import-not-found]
            AssignmentOut,
            ErrorBody,
            ItemHistoryOut,
            LoginBody,
            ReviewBody,
            ReviewBodyScores,
            ReviewBodyVerdict,
            ReviewOut,
            TokenOut,
        )

        anonymous = Client(base_url=server.url, raise_on_unexpected_status=True)
        refused = login.sync(client=anonymous, body=LoginBody(username="alice", password="not the password"))
        assert isinstance(refused, ErrorBody) and refused.detail == "wrong user name or password"
        signed_in = login.sync(client=anonymous, body=LoginBody(username="alice", password=PASSWORD))
        assert isinstance(signed_in, TokenOut) and signed_in.role == "reviewer"

        alice = AuthenticatedClient(base_url=server.url, token=signed_in.token, raise_on_unexpected_status=True)
        lease = queue_next.sync(client=alice)
        assert isinstance(lease, AssignmentOut)
        assert lease.item.id == item_id and lease.rationale.id == rationale_id and lease.item.options["A"] == "Aspirin"

        body = ReviewBody(verdict=ReviewBodyVerdict.ACCEPT, scores=ReviewBodyScores.from_dict(SCORES))
        stored = submit_review.sync(assignment_id=lease.assignment_id, client=alice, body=body)
        assert isinstance(stored, ReviewOut) and stored.rationale_id == rationale_id

        again = submit_review.sync(assignment_id=lease.assignment_id, client=alice, body=body)
        assert isinstance(again, ErrorBody), "a second submission is a documented 409 with the error body"

        history = get_item.sync(item_id=item_id, client=alice)
        assert isinstance(history, ItemHistoryOut)
        assert [(r.id, r.verdict, r.scores.to_dict()) for r in history.reviews] == [(stored.review_id, "accept", SCORES)]
        assert [v.id for v in history.versions] == [rationale_id]
