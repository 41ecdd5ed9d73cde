"""Settings, built once at start-up and passed down.

Precedence: command-line option > environment variable (CLINREASON_*) > project config file
(clinreason.toml) > built-in default.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinreason.domain.consensus import Policy, Rule, Settle
from clinreason.domain.rubric import DEFAULT_RUBRIC_DICT
from clinreason.domain.steps import Severity

DEFAULT_CONFIG_FILE = "clinreason.toml"
#: uploads of question banks through the web app larger than this are refused with 413 (CLINREASON_MAX_UPLOAD_MB)
DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024


class ConfigError(ValueError):
    pass


class EnvSettings(BaseSettings):
    """What the environment may set. Secrets (the API key) live here only, never in the database."""

    model_config = SettingsConfigDict(env_prefix="CLINREASON_", extra="ignore")

    db: str | None = None
    project: str | None = None
    config: str | None = None
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout: float | None = None
    llm_backend: str | None = None
    #: the largest question-bank file the web app accepts as an upload, in MiB
    max_upload_mb: float | None = Field(None, gt=0)


class LLMConfig(BaseModel):
    backend: Literal["auto", "openai", "local", "fake"] = "auto"
    base_url: str | None = None
    model: str | None = None
    timeout: float = 120.0
    concurrency: int = 8
    temperature: float = 0.2
    max_tokens: int = 768
    seed: int = 0
    max_attempts: int = 5
    #: seconds a request may wait on an open circuit breaker (an endpoint that is down) before its waits
    #: start to count as attempts
    outage_patience: float = Field(300.0, ge=0)
    #: ask for JSON-schema output; unset = only for the embedded model (see stages/runner.py)
    structured: bool | None = None
    #: USD per million tokens: model -> [prompt, completion]
    prices: dict[str, list[float]] = Field(default_factory=dict)


class ReviewConfig(BaseModel):
    overlap: int = Field(2, ge=1, le=10)
    max_strikes: int = Field(5, ge=1, le=50)
    lease_minutes: int = Field(30, ge=1)
    #: all_accept | majority | mean_score (see domain/consensus.py)
    rule: Literal["all_accept", "majority", "mean_score"] = "all_accept"
    mean_threshold: float = Field(4.0, ge=1, le=5)
    #: how a disagreement is settled: adjudicator | extra_reviewer
    settle: Literal["adjudicator", "extra_reviewer"] = "adjudicator"
    max_extra_reviewers: int = Field(1, ge=0, le=5)
    #: fixed: `overlap` reviewers per version; adaptive: one when screening is confident, more when needed
    allocation: Literal["fixed", "adaptive"] = "fixed"
    audit_share: float = Field(0.05, ge=0, le=1)
    max_reviewers: int = Field(3, ge=1, le=10)
    min_reliability: float = Field(0.75, ge=0, le=1)
    #: adaptive: accept when the posterior P(defective) is at most this; send back when P(sound) is at most revise_risk
    accept_risk: float = Field(0.02, gt=0, lt=0.5)
    revise_risk: float = Field(0.2, gt=0, lt=0.5)
    #: adaptive: when the screening signals' fitted accuracy is below this, an acceptance needs two passing reviews
    min_signal_accuracy: float = Field(0.75, ge=0.5, le=1)
    #: share of assignments that serve a calibration item (a version of known truth) instead
    calibration_rate: float = Field(0.05, ge=0, le=1)
    #: a step marked `error` at this severity or above blocks acceptance whatever the scores ("none": never)
    block_on_severity: Literal["minor", "major", "critical", "none"] = "critical"
    #: a version with any step marked `error` needs revision even when one of its reviewers accepted it
    revise_on_step_error: bool = True
    #: when a reviewer sees the bank's own reference explanation: never | after_submit (so it cannot anchor
    #: the first judgment) | always
    show_reference: Literal["never", "after_submit", "always"] = "after_submit"

    @classmethod
    def from_stored(cls, config: dict[str, Any] | None) -> ReviewConfig:
        """The `[review]` part of a project's stored configuration."""
        return cls.model_validate((config or {}).get("review") or {})

    def policy(self) -> Policy:
        """The consensus rules' view of these settings (domain/consensus.Policy)."""
        return Policy(overlap=self.overlap, rule=Rule(self.rule), mean_threshold=self.mean_threshold,
                      settle=Settle(self.settle), max_extra_reviewers=self.max_extra_reviewers,
                      max_strikes=self.max_strikes, allocation=self.allocation, audit_share=self.audit_share,
                      max_reviewers=self.max_reviewers, min_reliability=self.min_reliability,
                      accept_risk=self.accept_risk, revise_risk=self.revise_risk,
                      min_signal_accuracy=self.min_signal_accuracy,
                      block_on_severity=None if self.block_on_severity == "none" else Severity(self.block_on_severity),
                      revise_on_step_error=self.revise_on_step_error)


class GenerateConfig(BaseModel):
    mode: Literal["explain", "solve"] = "explain"
    use_reference_explanation: bool = False
    max_auto_retries: int = Field(2, ge=0)
    #: how long a worker's claim on an item lasts before another worker may take it over
    claim_seconds: int = Field(900, ge=5)
    #: `generate --engine ray` (stages/ray_engine.py): "http" asks the OpenAI-compatible endpoint(s) through
    #: Ray Data's HTTP request processor; "vllm" runs the model inside the Ray cluster (GPU nodes, vllm installed)
    ray_engine: Literal["http", "vllm"] = "http"
    #: the model vLLM loads with ray_engine = "vllm": a local path or a Hugging Face id the cluster can reach
    ray_model_path: str | None = None
    #: extra endpoints for ray_engine = "http" besides [llm] base_url (each `http://host:port/v1`); the items are
    #: dealt round-robin, one HTTP processor per endpoint
    ray_base_urls: list[str] = Field(default_factory=list)
    #: rows per Ray batch (the unit Ray schedules); its requests go out at once
    ray_batch_size: int = Field(16, ge=1)
    #: items claimed per Ray Data run: one dataset is executed per wave, so the claims of a long run stay fresh
    ray_wave: int = Field(4096, ge=1)
    #: vllm: engine replicas (each one GPU at tensor_parallel_size 1), and their engine_kwargs
    ray_vllm_replicas: int = Field(1, ge=1)
    ray_vllm_engine_kwargs: dict[str, Any] = Field(default_factory=dict)


class ScreenConfig(BaseModel):
    min_steps: int = Field(2, ge=0)
    max_steps: int = Field(20, ge=1)
    min_chars: int = Field(80, ge=0)
    max_chars: int = Field(8000, ge=1)
    #: checks whose failure sends a draft back for automatic regeneration
    blocking: list[str] = Field(default_factory=lambda: ["parse", "answer_matches_gold", "length", "answer_leakage",
                                                         "language"])
    near_duplicate_bits: int = Field(3, ge=0, le=64)
    compare_reference: bool = True
    #: an LLM judge pre-scores each rubric dimension as a hint for experts (off by default)
    judge: bool = False
    judge_backend: Literal["auto", "openai", "local", "fake"] = "auto"
    judge_base_url: str | None = None
    judge_model: str | None = None


#: the finding types the privacy scan reports (privacy/recognizers.py; PERSON needs an NER model)
PRIVACY_ENTITY_TYPES = ("MEDICAL_RECORD_NUMBER", "CN_RESIDENT_ID", "PHONE_NUMBER", "EMAIL_ADDRESS", "DATE", "AGE_OVER_89",
                        "STREET_ADDRESS", "URL", "IP_ADDRESS", "US_SSN", "PERSON")


class PrivacyConfig(BaseModel):
    """`[privacy]`: the scan before every LLM request (stages/privacy.py)."""

    #: which requests are scanned: remote (an endpoint not on this machine: not loopback, not embedded) | all
    scope: Literal["remote", "all"] = "remote"
    #: block: the item is held and nothing about it is sent | flag: it is sent, the findings recorded | off
    gate: Literal["block", "flag", "off"] = "block"
    #: findings scored below this are ignored
    min_score: float = Field(0.5, ge=0, le=1)
    #: installed spaCy pipelines (package names or folders) whose NER finds names; unset: names are not detected
    ner_model: str | list[str] | None = None
    #: finding types never acted on (e.g. AGE_OVER_89 for a bank whose ages are not about real people)
    ignore: list[str] = Field(default_factory=list)

    @field_validator("ignore")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in PRIVACY_ENTITY_TYPES]
        if unknown:
            raise ValueError(f"unknown finding type(s) {', '.join(unknown)} (known: {', '.join(PRIVACY_ENTITY_TYPES)})")
        return value

    @property
    def ner_models(self) -> tuple[str, ...]:
        if self.ner_model is None:
            return ()
        return (self.ner_model,) if isinstance(self.ner_model, str) else tuple(self.ner_model)


class WebConfig(BaseModel):
    """`[web]`: how the review app sits on the network."""

    #: reverse proxies (addresses or CIDR networks) whose X-Forwarded-For / X-Forwarded-Proto are believed;
    #: from anyone else those headers are ignored (default: nobody's)
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"'{entry}' is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8, ::1)") from None
        return [entry.strip() for entry in value]


class ProjectSection(BaseModel):
    #: the review app's language when neither the user nor the browser chose one (en | zh)
    language: Literal["en", "zh"] = "en"


class ProjectConfig(BaseModel):
    name: str = "default"
    project: ProjectSection = Field(default_factory=ProjectSection)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    screen: ScreenConfig = Field(default_factory=ScreenConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    rubric: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_RUBRIC_DICT))
    #: source name -> licence string, used in provenance and the dataset card
    licenses: dict[str, str] = Field(default_factory=dict)


class Settings(BaseModel):
    """Everything a command needs, resolved once."""

    db_url: str
    project: str
    config_path: Path
    project_config: ProjectConfig
    llm_api_key: str | None = None
    max_upload_bytes: int = Field(DEFAULT_MAX_UPLOAD_BYTES, gt=0)

    @property
    def llm(self) -> LLMConfig:
        return self.project_config.llm


def load_project_config(path: Path) -> ProjectConfig:
    if not path.exists():
        return ProjectConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def apply_environment(pc: ProjectConfig, env: EnvSettings) -> ProjectConfig:
    """The environment's LLM overrides (CLINREASON_LLM_*) on top of a project configuration."""
    llm = pc.llm
    if env.llm_base_url is not None:
        llm.base_url = env.llm_base_url or None
    if env.llm_model:
        llm.model = env.llm_model
    if env.llm_timeout:
        llm.timeout = env.llm_timeout
    if env.llm_backend:
        llm.backend = env.llm_backend  # type: ignore[assignment]
    return pc


def stored_config(name: str, stored: dict[str, Any], *, rubric: dict[str, Any],
                  env: EnvSettings | None = None) -> ProjectConfig:
    """The project configuration kept in the database (the truth once `init` has run), typed, with the
    project's current rubric and the environment's LLM overrides."""
    body = {k: v for k, v in (stored or {}).items() if k in ProjectConfig.model_fields and k not in ("name", "rubric")}
    pc = ProjectConfig.model_validate({**body, "name": name, "rubric": {k: v for k, v in rubric.items() if k != "version"}})
    return apply_environment(pc, env or EnvSettings())


def config_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as `key: old -> new` lines (what `init` prints)."""
    lines: list[str] = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


def resolve_settings(*, db: str | None = None, project: str | None = None, config: str | None = None) -> Settings:
    """Settings for a command. `project_config` is the file's until the store is opened
    (app.open_context), which replaces it with the project's stored configuration."""
    env = EnvSettings()
    config_path = Path(config or env.config or DEFAULT_CONFIG_FILE)
    pc = apply_environment(load_project_config(config_path), env)
    return Settings(
        db_url=db or env.db or "sqlite:///./clinreason.db",
        project=project or env.project or pc.name or "default",
        config_path=config_path,
        project_config=pc,
        llm_api_key=env.llm_api_key,
        max_upload_bytes=int(env.max_upload_mb * 1024 * 1024) if env.max_upload_mb else DEFAULT_MAX_UPLOAD_BYTES,
    )


#: what `clinreason init` writes beside each key of a new clinreason.toml (the values come from the models
#: above: they are the one table of defaults)
_TOML_NOTES: dict[str, str] = {
    "project.language": "the review app's language when neither the user nor the browser chose one: en | zh",
    "generate.mode": "explain: the gold answer is given and must be justified; solve: blind",
    "generate.use_reference_explanation": "ground drafts on the bank's own explanation when it has one",
    "generate.max_auto_retries": "regenerations after a failed blocking check before experts see it",
    "generate.claim_seconds": "a worker's claim on an item lasts this long before another may take it over",
    "generate.ray_engine": "generate --engine ray: http (the [llm] endpoint via Ray Data) | vllm (ray_model_path on GPUs)",
    "generate.ray_base_urls": "more OpenAI-compatible endpoints for --engine ray, besides [llm] base_url",
    "generate.ray_batch_size": "--engine ray: rows per Ray batch; a batch's requests go out together",
    "generate.ray_wave": "--engine ray: items claimed per Ray Data run",
    "generate.ray_model_path": "--engine ray with ray_engine = \"vllm\": the model (path or HF id) vLLM loads",
    "generate.ray_vllm_replicas": "--engine ray with vllm: engine replicas (one GPU each at tensor_parallel_size 1)",
    "screen.blocking": "checks whose failure sends a draft back for automatic regeneration",
    "screen.compare_reference": "compare drafts with the bank's own explanation where there is one",
    "screen.judge": "an LLM judge pre-scores each rubric dimension (a hint for experts)",
    "review.overlap": "reviewers per rationale version",
    "review.max_strikes": "failed rounds before the item is escalated to an adjudicator",
    "review.lease_minutes": "an unanswered assignment returns to the pool after this",
    "review.rule": "all_accept | majority | mean_score (with mean_threshold)",
    "review.settle": "a disagreement goes to: adjudicator | extra_reviewer (then adjudicator)",
    "review.allocation": "fixed: `overlap` per version | adaptive: 1 when screening is confident, more when needed",
    "review.audit_share": "adaptive: share of versions always double-reviewed (keeps agreement measurable)",
    "review.min_reliability": "adaptive: an acceptance needs a passing review from a reviewer at least this reliable",
    "review.accept_risk": "adaptive: accept once P(defective | screening, reviews) <= this",
    "review.revise_risk": "adaptive: send back once P(sound | screening, reviews) <= this",
    "review.min_signal_accuracy": "adaptive: screening weaker than this (as fitted): acceptance needs two passes",
    "review.block_on_severity": "a step marked error at this severity (minor|major|critical|none) blocks acceptance",
    "review.revise_on_step_error": "a version with any step marked error needs revision, even if one reviewer accepted",
    "review.show_reference": "the bank's reference explanation on the review screen: never | after_submit | always",
    "review.calibration_rate": "share of assignments that serve a calibration item (known truth) instead",
    "llm.backend": "auto: openai-compatible when base_url is set, else the embedded model",
    "llm.outage_patience": "seconds a request waits on an endpoint that is down before its waits count as attempts",
    "llm.structured": "ask for JSON-schema output; unset: only for the embedded model",
    "privacy.scope": "scan what goes to an LLM: remote (endpoint not on this machine) | all",
    "privacy.gate": "block: hold the item, nothing is sent | flag: send, record the findings | off",
    "privacy.min_score": "findings scored below this (0-1) are ignored",
    "privacy.ner_model": "an installed spaCy pipeline whose NER finds names (unset: names are not detected)",
    "privacy.ignore": 'finding types never acted on, e.g. ["AGE_OVER_89"]',
    "web.trusted_proxies": "reverse proxies (IP or CIDR) whose X-Forwarded-For/-Proto are believed",
}
#: commented-out examples shown under a section
_TOML_EXAMPLES: dict[str, list[str]] = {
    "screen": ['# judge_base_url = "http://127.0.0.1:8001/v1"', '# judge_model = "qwen2.5-72b-instruct"'],
    "llm": ['# base_url = "http://127.0.0.1:8000/v1"', '# model = "deepseek-reasoner"'],
    "llm.prices": ['# "deepseek-reasoner" = [0.55, 2.19]   # USD per million tokens: [prompt, completion]'],
    "web": ['# trusted_proxies = ["127.0.0.1"]        # e.g. nginx on this machine, in front of `clinreason serve`'],
}
#: the licences a new project starts with, by bundled bank
_DEFAULT_LICENSES = {"medqa": "MIT", "medmcqa": "MIT", "pubmedqa": "MIT", "mmlu": "MIT",
                     "cmexam": "research use only (CMExam)"}


def _toml_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()


def _toml_section(name: str, model: BaseModel) -> list[str]:
    lines = [f"[{name}]"]
    for key, value in model.model_dump(mode="json").items():
        if isinstance(value, dict):
            continue  # a table of its own (llm.prices)
        note = _TOML_NOTES.get(f"{name}.{key}")
        entry = f"{key} = {_toml_value(value)}" if value is not None else f"# {key} ="
        if value is None and note is None:
            continue
        lines.append(f"{entry:<39} # {note}" if note else entry)
    return lines + _TOML_EXAMPLES.get(name, []) + [""]


def default_config_toml() -> str:
    """A new project's clinreason.toml, written from the models' defaults."""
    defaults = ProjectConfig()
    lines = ["# clinreason project configuration. `clinreason init` stores it in the database, where the",
             "# project's configuration lives; run it again after editing this file (it prints what changed).",
             "# Environment variables (CLINREASON_*) override the LLM settings; secrets such as",
             "# CLINREASON_LLM_API_KEY belong in the environment, never in this file.",
             f"name = {_toml_value(defaults.name)}", ""]
    for name in ("project", "generate", "screen", "review", "llm"):
        lines += _toml_section(name, getattr(defaults, name))
    lines += ["[llm.prices]"] + _TOML_EXAMPLES["llm.prices"] + [""]
    for name in ("privacy", "web"):
        lines += _toml_section(name, getattr(defaults, name))
    lines += ["[licenses]"] + [f"{k} = {_toml_value(v)}" for k, v in _DEFAULT_LICENSES.items()]
    return "\n".join(lines) + "\n"


DEFAULT_CONFIG_TOML = default_config_toml()
