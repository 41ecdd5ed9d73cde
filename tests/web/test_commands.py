"""`clinreason users ...` and `clinreason serve --help` as an operator uses them."""

from __future__ import annotations

from typer.testing import CliRunner

from clinreason.cli import app as cli

runner = CliRunner()


def test_users_add_list_token_and_deactivate(engine, project, db_url, web_app):
    from fastapi.testclient import TestClient

    base = ["--db", db_url, "--config", "/nonexistent/clinreason.toml"]
    r = runner.invoke(cli, ["users", "add", "alice", "--role", "reviewer", "--specialty", "cardiology",
                            "--specialty", "neurology", "--password-stdin", *base], input="a long password\n")
    assert r.exit_code == 0, r.output
    assert "added reviewer 'alice' (cardiology, neurology)" in r.output
    again = runner.invoke(cli, ["users", "add", "alice", "--role", "reviewer", "--password-stdin", *base], input="x" * 12)
    assert again.exit_code == 1 and "already exists" in again.output
    bad = runner.invoke(cli, ["users", "add", "bob", "--role", "wizard", "--password-stdin", *base], input="x" * 12)
    assert bad.exit_code == 1 and "role" in bad.output
    short = runner.invoke(cli, ["users", "add", "bob", "--role", "admin", "--password-stdin", *base], input="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    listed = runner.invoke(cli, ["users", "list", *base])
    assert "alice" in listed.output and "cardiology, neurology" in listed.output and "bob" not in listed.output
    token = runner.invoke(cli, ["users", "token", "alice", *base]).output.strip()
    assert token.startswith("cr_")
    with TestClient(web_app) as client:
        assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["username"] == "alice"
        assert client.post("/api/login", json={"username": "alice", "password": "a long password"}).status_code == 200
        assert runner.invoke(cli, ["users", "deactivate", "alice", *base]).exit_code == 0
        assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_serve_binds_to_this_machine_by_default():
    r = runner.invoke(cli, ["serve", "--help"])
    assert r.exit_code == 0 and "127.0.0.1" in r.output and "--port" in r.output and "--db" in r.output
