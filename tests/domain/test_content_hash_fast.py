"""content_hash writes the hashed JSON itself; its digests must be those of the generic encoder."""

from __future__ import annotations

import hashlib
import json
import random
import unicodedata

import pytest

from clinreason.domain.items import content_hash, normalise_text

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _reference(question, options, answer_labels, answer_text) -> str:
    """The digest as it was computed before: the generic encoder over the payload dict."""
    def norm(text):
        return " ".join(unicodedata.normalize("NFC", text).split())

    payload = {"q": norm(question), "o": [[norm(k), norm(v)] for k, v in options.items()],
               "a": sorted(answer_labels), "t": norm(answer_text) if answer_text else None}
    return hashlib.sha256(_ENCODE(payload).encode("utf-8")).hexdigest()


AWKWARD = ['say "hi"', "back\\slash \\n", "中文题目：患者男，45岁", "tab\tnew\nline\r", "\x00\x01\x1f\x7f",
           "\u2028\u2029 line seps", "e\u0301 combining (NFC)", "\ufeffbom", "emoji 🩺 ", "", "   ", "/ slash </script>",
           "\u00a0nbsp\u3000ideographic space", "Ａ full width", "ﬁ ligature", "\u212b angstrom"]


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_text_hashes_as_before(text):
    options = {"A": text, text or "B": "plain", "C": text + "x"}
    for labels in ([], ["A"], ["C", "A"], [text]):
        for answer_text in (None, "", text, "  x  "):
            assert content_hash(text, options, labels, answer_text) == _reference(text, options, labels, answer_text)


def test_random_text_hashes_as_before():
    rng = random.Random(5)
    alphabet = 'ab "\\\t\n\x00\x1f中文é\u0301\u2028 🩺/'
    for _ in range(500):
        def word():
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        options = {word(): word() for _ in range(rng.randint(0, 5))}
        labels = [word() for _ in range(rng.randint(0, 3))]
        q, t = word(), rng.choice([None, word()])
        assert content_hash(q, options, labels, t) == _reference(q, options, labels, t)


def test_non_str_labels_take_the_generic_encoder():
    assert content_hash("q", {"A": "x"}, [1], None) == _reference("q", {"A": "x"}, [1], None)


def test_lone_surrogates_fail_as_before():
    with pytest.raises(UnicodeEncodeError):
        _reference("bad \ud800", {}, [], None)
    with pytest.raises(UnicodeEncodeError):
        content_hash("bad \ud800", {}, [], None)


def test_normalise_text_ascii_shortcut():
    assert normalise_text("  a \t b\n") == "a b"
    assert normalise_text("e\u0301") == "\u00e9"
