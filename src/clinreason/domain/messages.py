"""Messages a person reads (an error's text), marked for translation where they are written, without any
translation machinery: the domain stays pure, and web/i18n.py translates them where they are shown.

A message with values is raised as a template and its values, never as a finished f-string:

    raise StepMarkError(field, N_("step {step} is marked twice"), {"step": step})

`N_` only marks the template for `pybabel extract` (babel.cfg); the exception keeps `template` (the
catalogue's msgid) and `params`, and its English text — `str(exc)`, `.message` — is
`template.format(**params)`, exactly what it said before it was translatable. The web app looks the
template up in the request's language and fills in the same values (`i18n.translate_message`). Values are
data (numbers, field names, codes such as 'edit'): they are never translated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Params = Mapping[str, Any] | None


def N_(message: str) -> str:
    """Mark `message` for extraction; it is translated where it is shown."""
    return message


def fill(template: str, params: Params) -> str:
    """The English text: `template` with its values (None: the template is the whole message)."""
    return template if params is None else template.format(**params)


class Translatable(Exception):
    """An error whose text a person reads: `template` (a marked message) with `params` (None: no values,
    the template is the text as it is). `str(exc)` is the English text."""

    template: str
    params: dict[str, Any] | None

    def __init__(self, template: str = "", params: Params = None):
        self.template = template
        self.params = dict(params) if params is not None else None
        super().__init__(fill(template, self.params))
