"""The web fixtures of tests/web (the app on the `engine` fixture, a TestClient, `seed`), shared with the
security tests that need a running app."""

from __future__ import annotations

from web.conftest import client, seed, web_app, web_settings  # noqa: F401 (fixtures)
