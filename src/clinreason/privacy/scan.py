"""The privacy scanner: presidio-analyzer with its no-model (`no_op`) NLP engine, the rules of
recognizers.py as presidio recognizers, presidio's own US SSN recognizer, and — only when
`[privacy] ner_model` names an installed spaCy pipeline — a spaCy engine whose NER finds names.

Nothing is downloaded, ever: tldextract (which presidio's own e-mail recognizer imports; we use ours)
is pointed at no suffix-list URL before presidio is imported, and a
spaCy model is loaded only when it is already installed (presidio's own loader would download a
missing one; we check first and report it as absent instead).

One scanner per process and configuration (`get_scanner`): building it imports presidio (about two
seconds), so it is built when the first request that needs a scan is about to go out, never at import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinreason.privacy import recognizers as rules

#: the languages items have (domain/items.detect_language); anything else is scanned as English
LANGUAGES = ("en", "zh")
_log = logging.getLogger(__name__)


class ScannerError(RuntimeError):
    """The scanner cannot be built (presidio-analyzer missing or broken)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One identifier found in one named segment of a request (`question`, `option A`, `rationale` ...)."""

    segment: str
    entity_type: str
    start: int
    end: int
    score: float
    recognizer: str
    text: str = field(repr=False)
    why: str = ""

    @property
    def digest(self) -> str:
        """What identifies the found text without keeping it: released findings are matched on it."""
        return text_digest(self.entity_type, self.text)

    def to_record(self) -> dict[str, Any]:
        """The form stored with a hold and its event: type, span and score, never the identifier itself
        (the span locates it in the stored item; `preview` shows its shape)."""
        return {"segment": self.segment, "type": self.entity_type, "start": self.start, "end": self.end,
                "score": round(self.score, 3), "recognizer": self.recognizer, "why": self.why,
                "digest": self.digest, "preview": mask(self.text)}


def text_digest(entity_type: str, text: str) -> str:
    normal = "".join(text.split()).lower()
    return hashlib.sha256(f"{entity_type}\x00{normal}".encode()).hexdigest()[:24]


def mask(text: str) -> str:
    """The shape of an identifier, for a person to recognise it without the log holding it: the first
    and last character of each run of letters or digits longer than three, the rest masked."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) > 3:
            out.append(run[0] + "•" * (len(run) - 2) + run[-1])
        else:
            out.append("•" * len(run))
        run.clear()

    for ch in text[:80]:
        if ch.isalnum():
            run.append(ch)
        else:
            flush()
            out.append(ch)
    flush()
    return "".join(out) + ("…" if len(text) > 80 else "")


def _keep_tldextract_offline() -> None:
    """tldextract builds an extractor when imported and fetches the public suffix list on first use
    unless told otherwise; only a local file is acceptable here."""
    current = os.environ.get("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS")
    if current is None or not all(Path(line.strip()).is_file() for line in current.splitlines() if line.strip()):
        os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""


def ner_model_status(name: str) -> str | None:
    """None when the spaCy pipeline `name` (a package or a pipeline folder) is installed here, else why
    it is not used. Never downloads."""
    if Path(name).is_dir():
        return None
    if importlib.util.find_spec("spacy") is None:
        return "spaCy is not installed"
    try:
        import spacy.util

        installed = spacy.util.is_package(name)
    except Exception as exc:  # a broken spaCy install: report, do not crash the worker
        return f"spaCy cannot check for it ({exc})"
    return None if installed else f"the spaCy package '{name}' is not installed (pip install it to detect names)"


class Scanner:
    """Scans named text segments; returns findings at or above `min_score`."""

    def __init__(self, *, ner_models: Sequence[str] = (), min_score: float = 0.5):
        self.min_score = min_score
        #: why a configured NER model is not in use (empty when every one is, or none was asked for)
        self.notes: list[str] = []
        #: language -> the spaCy pipeline used for names there
        self.ner: dict[str, str] = {}
        self._engines = self._build(tuple(ner_models))
        self._lock = threading.Lock()

    # -- building ---------------------------------------------------------------------------------

    def _build(self, ner_models: tuple[str, ...]) -> dict[str, Any]:
        _keep_tldextract_offline()
        try:
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NoOpNlpEngine
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise ScannerError(f"the privacy scan needs presidio-analyzer ({exc}); pip install presidio-analyzer") from None
        spacy_models = self._usable_models(ner_models)
        engines: dict[str, Any] = {}
        for language in LANGUAGES:
            recognizers = _rule_recognizers(language)
            model = spacy_models.get(language)
            if model is not None:
                from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
                from presidio_analyzer.predefined_recognizers import SpacyRecognizer

                config = NerModelConfiguration(labels_to_ignore=["O"],
                                               model_to_presidio_entity_mapping={"PERSON": rules.PERSON,
                                                                                 "PER": rules.PERSON})
                nlp_engine: Any = SpacyNlpEngine(models=[{"lang_code": language, "model_name": model}],
                                                 ner_model_configuration=config)
                recognizers.append(SpacyRecognizer(supported_language=language, supported_entities=[rules.PERSON]))
                self.ner[language] = model
            else:
                nlp_engine = NoOpNlpEngine(models=[{"lang_code": language, "model_name": "no_op"}])
            registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
            engines[language] = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])
        return engines

    def _usable_models(self, names: tuple[str, ...]) -> dict[str, str]:
        """Language -> model, for the configured models that are installed; the others go to `notes`."""
        usable: dict[str, str] = {}
        for name in names:
            why = ner_model_status(name)
            if why is not None:
                self.notes.append(f"ner_model '{name}' skipped: {why}; names are not detected")
                continue
            try:
                import spacy

                language = str(spacy.load(name).lang)
            except Exception as exc:
                self.notes.append(f"ner_model '{name}' skipped: it does not load ({exc}); names are not detected")
                continue
            if language not in LANGUAGES:
                self.notes.append(f"ner_model '{name}' skipped: its language '{language}' is not one items have")
                continue
            usable.setdefault(language, name)
        return usable

    # -- scanning ---------------------------------------------------------------------------------

    def scan_text(self, text: str, *, language: str = "en", segment: str = "text",
                  min_score: float | None = None) -> list[Finding]:
        if not text or not text.strip():
            return []
        engine = self._engines[language if language in LANGUAGES else "en"]
        threshold = self.min_score if min_score is None else min_score
        with self._lock:  # spaCy pipelines are not guaranteed thread-safe; the scan is cheap
            results = engine.analyze(text=text, language=language if language in LANGUAGES else "en",
                                     score_threshold=threshold)
        findings = [Finding(segment=segment, entity_type=r.entity_type, start=r.start, end=r.end, score=float(r.score),
                            recognizer=str((r.recognition_metadata or {}).get("recognizer_name", "")),
                            text=text[r.start:r.end], why=_why(r)) for r in results]
        return resolve_overlaps(findings)

    def scan(self, segments: Iterable[tuple[str, str]], *, language: str = "en",
             min_score: float | None = None) -> list[Finding]:
        """Every finding in every (name, text) segment, in segment order, then by position."""
        out: list[Finding] = []
        for name, text in segments:
            out += self.scan_text(text, language=language, segment=name, min_score=min_score)
        return out


def _why(result: Any) -> str:
    why = (result.recognition_metadata or {}).get("why")
    if why:
        return str(why)[:200]
    name = (result.recognition_metadata or {}).get("recognizer_name", "")
    return {"SpacyRecognizer": "a name, by the NER model", "UsSsnRecognizer": "US social security number"}.get(
        str(name), str(name))


def resolve_overlaps(findings: list[Finding]) -> list[Finding]:
    """Of findings of one type that overlap, the best scored (then the longest) stays; findings of
    different types may overlap (a date inside an address)."""
    ordered = sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in ordered:
        if any(k.entity_type == f.entity_type and k.start < f.end and f.start < k.end for k in kept):
            continue
        kept.append(f)
    return sorted(kept, key=lambda f: (f.start, f.end, f.entity_type))


def _rule_recognizers(language: str) -> list[Any]:
    """The rules as presidio recognizers, plus presidio's US SSN one."""
    from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult
    from presidio_analyzer.predefined_recognizers import UsSsnRecognizer

    class RuleRecognizer(LocalRecognizer):
        def __init__(self, rule: rules.Rule):
            self.rule = rule
            super().__init__(supported_entities=[rule.entity], supported_language=language, name=rule.name)

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if entities and self.rule.entity not in entities:
                return []
            return [RecognizerResult(entity_type=self.rule.entity, start=m.start, end=m.end, score=m.score,
                                     analysis_explanation=AnalysisExplanation(recognizer=self.rule.name,
                                                                              original_score=m.score,
                                                                              textual_explanation=m.why),
                                     recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.rule.name,
                                                           RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                                                           "why": m.why})
                    for m in self.rule.find(text)]

    return [*(RuleRecognizer(rule) for rule in rules.RULES),
            UsSsnRecognizer(supported_language=language)]


_SCANNERS: dict[tuple[tuple[str, ...], float], Scanner] = {}
_SCANNERS_LOCK = threading.Lock()


def get_scanner(*, ner_models: Sequence[str] = (), min_score: float = 0.5) -> Scanner:
    """The process's scanner for this configuration (built once; thread-safe)."""
    key = (tuple(ner_models), float(min_score))
    with _SCANNERS_LOCK:
        if key not in _SCANNERS:
            _SCANNERS[key] = Scanner(ner_models=key[0], min_score=key[1])
        return _SCANNERS[key]
