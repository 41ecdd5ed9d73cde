"""Prompt templates shipped in the package, English and Chinese, identified by content hash.

Each template file has a `system` and a `user` block. `render()` returns the chat messages and the
hash of the template source, which is stored with every rationale it produced.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, StrictUndefined

from clinreason.llm.base import ChatMessage

LANGUAGES = ("en", "zh")


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
                       autoescape=False)


@lru_cache(maxsize=64)
def _source(name: str, language: str) -> str:
    lang = language if language in LANGUAGES else "en"
    return (resources.files("clinreason.prompts") / f"{name}.{lang}.j2").read_text(encoding="utf-8")


def template_hash(name: str, language: str) -> str:
    return hashlib.sha256(_source(name, language).encode("utf-8")).hexdigest()


@lru_cache(maxsize=64)
def _compiled(name: str, language: str):
    return _env().from_string(_source(name, language))


def render(name: str, language: str, **context: Any) -> tuple[list[ChatMessage], str]:
    source = _source(name, language)
    tmpl = _compiled(name, language)
    ctx = tmpl.new_context(context)
    system = "".join(tmpl.blocks["system"](ctx)).strip()
    ctx = tmpl.new_context(context)
    user = "".join(tmpl.blocks["user"](ctx)).strip()
    messages: list[ChatMessage] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    return messages, hashlib.sha256(source.encode("utf-8")).hexdigest()
