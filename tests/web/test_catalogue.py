"""The Chinese catalogue keeps up with the code: every message `pybabel extract` finds is translated (none
untranslated, none fuzzy), the compiled catalogue the package ships says what the .po says, and every
page of every router (`route_modules()`), rendered in Chinese, shows none of the English chrome the same
page shows in English."""

from __future__ import annotations

import gettext
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from clinreason.web import i18n

ROOT = Path(__file__).resolve().parents[2]
PO = i18n.LOCALE_DIR / "zh" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
MUST_NOT_SHOW_IN_ZH = ["Sign out", "Next item", "Accept", "Regenerate", "Flag question", "Automatic checks",
                       "General comment", "Medical correctness"]


def _messages(path: Path) -> dict[str, object]:
    with path.open("rb") as fh:
        return {(m.id if isinstance(m.id, str) else m.id[0]): m for m in read_po(fh) if m.id}


def test_the_zh_catalogue_translates_every_extracted_message(tmp_path):
    pot = tmp_path / "messages.pot"
    pybabel = Path(sys.executable).with_name("pybabel")
    subprocess.run([str(pybabel), "extract", "-F", "babel.cfg", "--no-location", "-o", str(pot), "."], cwd=ROOT,
                   check=True, capture_output=True)
    extracted = _messages(pot)
    translated = _messages(PO)
    assert len(extracted) > 150, "the extraction found almost nothing: is babel.cfg right?"
    missing = sorted(k for k in extracted if k not in translated)
    assert not missing, f"{len(missing)} messages have no entry in {PO.name} (run `make i18n-update`): {missing[:10]}"
    untranslated = sorted(k for k, m in translated.items() if k in extracted and not (
        m.string if isinstance(m.string, str) else all(m.string)))
    fuzzy = sorted(k for k, m in translated.items() if k in extracted and m.fuzzy)
    assert not untranslated, f"untranslated: {untranslated[:10]}"
    assert not fuzzy, f"fuzzy (check and clear the flag): {fuzzy[:10]}"


def test_the_shipped_compiled_catalogue_says_what_the_po_says():
    assert MO.exists(), "the compiled catalogue is missing: run `make i18n-compile`"
    with MO.open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    for key, m in _messages(PO).items():
        string = m.string if isinstance(m.string, str) else m.string[0]
        assert compiled.gettext(key) == string, f"{key!r}: the .mo is stale (run `make i18n-compile`)"


class _Chrome(HTMLParser):
    """The text a reader meets on a page: text nodes and the labelling attributes, stripped."""

    #: `value` only where it is a label (a button's); an <option>'s or a hidden field's value is a code
    ATTRS = {"title", "placeholder", "aria-label", "alt"}

    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        shown = dict(attrs)
        labelled_by_value = tag == "input" and shown.get("type") in ("submit", "button", "reset")
        for name, value in attrs:
            if (name in self.ATTRS or (name == "value" and labelled_by_value)) and value and value.strip():
                self.found.add(value.strip())

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.found.add(data.strip())


def chrome(html: str) -> set[str]:
    parser = _Chrome()
    parser.feed(html)
    return parser.found


def _pages(client, seed):
    """Every GET page of the routers, with ids that exist, and who may see it."""
    from fastapi.routing import APIRoute

    from clinreason.web.app import route_modules

    item_id, _rid = seed.item()
    paths = []
    for module in route_modules():
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            if "GET" in route.methods and not route.path.startswith("/api/"):
                paths.append(route.path.replace("{item_id}", item_id))
    return paths


@pytest.fixture
def people(seed):
    return {"reviewer": seed.user("rita"), "admin": seed.user("adam", role="admin")}


def _get(client, path, who, lang):
    headers = {**who["auth"], "Accept-Language": lang} if who else {"Accept-Language": lang}
    return client.get(path, headers=headers, follow_redirects=True)


def test_every_page_in_zh_shows_none_of_its_english_chrome(client, seed, people):
    msgids = {k for k, m in _messages(PO).items() if isinstance(m.string, str) and m.string and m.string != k}
    checked = 0
    for path in _pages(client, seed):
        who = None if path == "/login" else people["reviewer"] if path == "/review" else people["admin"]
        en = _get(client, path, who, "en")
        zh = _get(client, path, who, "zh-CN,zh;q=0.9,en;q=0.5")
        assert en.status_code == zh.status_code == 200, (path, en.status_code, zh.status_code)
        assert zh.headers["content-language"] == "zh-Hans" and '<html lang="zh-Hans">' in zh.text, path
        english = {text for text in chrome(en.text) if text in msgids}
        assert english, f"{path}: the English page shows no catalogued text at all"
        left = sorted(english & chrome(zh.text))
        assert not left, f"{path} in zh still shows English chrome: {left}"
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("path", ["/review", "/items/{item}", "/dashboard", "/admin", "/login"])
def test_with_accept_language_zh_the_named_english_labels_are_gone(client, seed, people, path):
    item_id, _rid = seed.item()
    path = path.replace("{item}", item_id)
    who = None if path == "/login" else people["reviewer"] if path in ("/review",) else people["admin"]
    zh = _get(client, path, who, "zh-CN")
    assert zh.status_code == 200
    texts = chrome(zh.text)
    for label in MUST_NOT_SHOW_IN_ZH:
        assert not any(label in t for t in texts), (path, label, [t for t in texts if label in t][:3])
    assert any("\u4e00" <= ch <= "\u9fff" for t in texts for ch in t), f"{path}: no Chinese label"
    if path in ("/dashboard", "/review"):
        en = _get(client, path, who, "en")
        assert "Medical correctness" in en.text
