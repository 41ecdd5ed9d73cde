"""The review app's languages: simplified Chinese and English, with standard gettext catalogues.

Messages are marked in templates with `{{ _("…") }}` / `{% trans %}` (jinja2.ext.i18n) and in Python with
`_()` from this module; `make i18n-extract`, `make i18n-update` and `make i18n-compile` run Babel's
`pybabel` over them (babel.cfg); the compiled catalogues (`locale/<lang>/LC_MESSAGES/messages.mo`) ship in
the package and are read with the standard library's `gettext`.

Which language a request gets: the signed-in user's setting (`users add --lang`, or the control in the
page header), else the `clinreason_lang` cookie the header control sets before sign-in, else the
browser's `Accept-Language`, else the project's `[project] language`."""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

SUPPORTED = ("en", "zh")
DEFAULT = "en"
LANGUAGE_COOKIE = "clinreason_lang"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
#: what the language control shows for each language, in that language
NAMES = {"en": "English", "zh": "中文"}

_current: ContextVar[str] = ContextVar("clinreason_language", default=DEFAULT)


@lru_cache(maxsize=None)
def translations(language: str) -> _gettext.NullTranslations:
    """The compiled catalogue of `language` (English is the source language: no catalogue)."""
    if language == DEFAULT:
        return _gettext.NullTranslations()
    return _gettext.translation("messages", localedir=str(LOCALE_DIR), languages=[language])


def current() -> str:
    return _current.get()


def gettext(message: str) -> str:
    """`message` in the current request's language."""
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


_ = gettext


def translate_message(message: str, *, template: str | None = None, params: Mapping[str, Any] | None = None) -> str:
    """`message` (English) in the current language. An error raised with a marked template and its values
    (domain/messages.py `Translatable`: `message == template.format(**params)`) is looked up by its template
    and filled with the same values; a plain message is looked up as it is. Without a catalogue entry, or
    with a translation that does not fit the values, the English message is the answer."""
    if template is None:
        return gettext(message) if message else message
    if not template:
        return message
    translated = gettext(template)
    if params is None:
        return translated
    try:
        return translated.format(**params)
    except (KeyError, IndexError, ValueError, AttributeError):  # a broken translation never hides the error
        return message


def translate_error(exc: BaseException, message: str | None = None) -> str:
    """The text of `exc` in the current language: `message` (default `str(exc)`) is its English text; a
    `template` and `params` on the exception are what is translated (see translate_message)."""
    text = str(exc) if message is None else message
    template = getattr(exc, "template", None)
    params = getattr(exc, "params", None)
    return translate_message(text, template=template if isinstance(template, str) else None,
                             params=params if isinstance(params, Mapping) else None)


def N_(message: str) -> str:
    """Mark a message for extraction where it is defined; translate it where it is shown (`gettext`)."""
    return message


#: pydantic's messages for what a request body most often gets wrong, by error type. The English answer
#: stays pydantic's own text; these are what the other languages translate, filled with the error's `ctx`.
VALIDATION_MESSAGES = {
    "missing": N_("Field required"),
    "extra_forbidden": N_("Extra inputs are not permitted"),
    "string_type": N_("Input should be a valid string"),
    "string_too_short": N_("String should have at least {min_length} characters"),
    "string_too_long": N_("String should have at most {max_length} characters"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "float_type": N_("Input should be a valid number"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "bool_type": N_("Input should be a valid boolean"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "list_type": N_("Input should be a valid list"),
    "dict_type": N_("Input should be a valid dictionary"),
    "model_type": N_("Input should be an object"),
    "model_attributes_type": N_("Input should be an object"),
    "literal_error": N_("Input should be {expected}"),
    "enum": N_("Input should be {expected}"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "too_short": N_("List should have at least {min_length} items, not {actual_length}"),
    "too_long": N_("List should have at most {max_length} items, not {actual_length}"),
    "json_invalid": N_("Invalid JSON: {error}"),
    "finite_number": N_("Input should be a finite number"),
}


def translate_validation(error: Mapping[str, Any]) -> str:
    """One pydantic error's `msg` in the current language (English: pydantic's text as it is)."""
    message = str(error.get("msg", ""))
    template = VALIDATION_MESSAGES.get(str(error.get("type", "")))
    if _current.get() == DEFAULT or template is None:
        return message
    ctx = dict(error["ctx"]) if isinstance(error.get("ctx"), Mapping) else {}
    if isinstance(ctx.get("expected"), str):  # pydantic joins the choices with an English "or"
        ctx["expected"] = ctx["expected"].replace("' or '", "' " + gettext(N_("or")) + " '")
    return translate_message(message, template=template, params=ctx)


def role_names() -> dict[str, str]:
    """The roles as the header shows them, in the current language."""
    return {"reviewer": _("reviewer"), "adjudicator": _("adjudicator"), "admin": _("admin")}


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Render (or answer) in `lang` for the duration of the block."""
    token = _current.set(lang if lang in SUPPORTED else DEFAULT)
    try:
        yield
    finally:
        _current.reset(token)


def normalise(tag: str | None) -> str | None:
    """A language tag (`zh-CN`, `zh_Hans`, `en-GB`, `zh`) as one of SUPPORTED, or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in SUPPORTED else None


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser prefers most (RFC 9110 q-values; ties keep the header's order).
    A small parser of one header: Babel negotiates locales but does not read this header."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _sep, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _eq, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        lang = normalise(tag)
        if lang and q > 0:
            ranked.append((-q, position, lang))
    return min(ranked)[2] if ranked else None


def for_request(request: Any, user: str | None = None) -> str:
    """The language of a web request (a Starlette Request): `user`'s setting, the cookie, Accept-Language,
    the serving project's `[project] language`."""
    settings = getattr(getattr(request.app.state, "web", None), "settings", None)
    project = settings.project_config.project.language if settings is not None else None
    return choose(user=user, cookie=request.cookies.get(LANGUAGE_COOKIE),
                  accept_language=request.headers.get("accept-language"), project=project)


def use(lang: str) -> None:
    """Answer the rest of this request in `lang`. Called from async dependencies (the request's own task):
    the sync endpoint, which runs in a thread with a copy of this context, and the exception handlers see it."""
    _current.set(lang if lang in SUPPORTED else DEFAULT)


def choose(*, user: str | None, cookie: str | None, accept_language: str | None, project: str | None) -> str:
    """The language of one request (see the module's docstring for the order)."""
    return (normalise(user) or normalise(cookie) or from_accept_language(accept_language) or normalise(project)
            or DEFAULT)
