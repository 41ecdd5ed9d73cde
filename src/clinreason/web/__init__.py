"""The review app: FastAPI JSON API + server-rendered pages (Jinja2 + htmx). Imports nothing heavy until
`create_app` is called, so `clinreason --help` stays fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from clinreason.config import Settings


def create_app(settings: Settings, **kwargs: Any) -> FastAPI:
    """Build the FastAPI app for these settings (see `clinreason.web.app.create_app`)."""
    from clinreason.web.app import create_app as _create_app

    return _create_app(settings, **kwargs)
