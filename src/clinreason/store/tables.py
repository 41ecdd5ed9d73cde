"""The schema, as SQLAlchemy Core tables. Alembic migrations in `migrations/` create exactly this;
a test keeps the two in step."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("config", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

rubric_versions = Table(
    "rubric_versions",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("body", JSON, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

items = Table(
    "items",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("question", Text, nullable=False),
    Column("options", JSON, nullable=False),  # ordered list of [label, text]
    Column("answer_labels", JSON, nullable=False),  # list of labels (a set, sorted)
    Column("answer_text", Text),
    Column("language", String(16), nullable=False),
    Column("specialty", String(200)),
    Column("context", Text),
    Column("reference_explanation", Text),
    Column("meta", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("strikes", Integer, nullable=False, default=0),
    Column("auto_retries", Integer, nullable=False, default=0),
    Column("flag_reason", Text),
    Column("fail_reason", Text),
    Column("claimed_by", String(100)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("project_id", "content_hash"),
    Index(None, "project_id", "state"),
)
# the review queue (migration 0010): in-review items oldest first, overall and within one specialty
# (matched without case), read in index order a window at a time instead of sorted on every lease
Index("ix_items_queue_order", items.c.project_id, items.c.state, items.c.created_at, items.c.id)
Index("ix_items_queue_specialty", items.c.project_id, items.c.state, func.lower(items.c.specialty),
      items.c.created_at, items.c.id)
# `status` counts the flagged items from this partial index, not a scan of every item (migration 0010)
Index("ix_items_flagged", items.c.project_id, sqlite_where=items.c.flag_reason.is_not(None),
      postgresql_where=items.c.flag_reason.is_not(None))

item_sources = Table(
    "item_sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("source", String(100), nullable=False),
    Column("subject", String(200)),
    Column("file", String(500), nullable=False),
    Column("record", String(100), nullable=False),
    Column("license", String(200)),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item_id", "source", "file", "record"),
    Index(None, "source"),
    Index(None, "source", "item_id"),  # items per source, read from the index alone (migration 0010)
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("specialties", JSON, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("language", String(8)),  # the review app's language for this user (en | zh); null: the browser's
)

rationales = Table(
    "rationales",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("parent_version", Integer),
    Column("origin", String(20), nullable=False),
    Column("author", String(200), nullable=False),
    Column("steps", JSON, nullable=False),
    Column("final_answer", JSON, nullable=False),
    Column("text", Text, nullable=False),
    Column("model", String(200)),
    Column("params", JSON, nullable=False),
    Column("prompt_hash", String(64)),
    Column("seed", Integer),
    Column("raw_output", Text),
    Column("reasoning", Text),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    Column("latency_ms", Float),
    Column("parse_status", String(20), nullable=False),
    Column("parse_error", Text),
    Column("idempotency_key", String(100), unique=True),
    Column("fingerprint", BigInteger),  # 64-bit simhash (signed) of the text, for near-duplicate screening
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item_id", "version"),
    # versions, drafting models, tokens and cost per project, read from the index alone (migration 0010)
    Index("ix_rationales_model_origin_tokens", "model", "origin", "prompt_tokens", "completion_tokens", "cost",
          "item_id"),
    # near-duplicate look-ups (migration 0016): two fingerprints within 3 bits share one of their four
    # 16-bit blocks; `fingerprint_block(i)` is the same expression in a query
    *(Index(f"ix_rationales_fingerprint_block_{i}", text(f"((fingerprint >> {16 * i}) & 65535)" if i else
                                                         "(fingerprint & 65535)")) for i in range(4)),
)



def fingerprint_block(i: int) -> ColumnElement[int]:
    """16-bit block `i` (0-3, lowest first) of a version's fingerprint, as SQL: `(fingerprint >> 16*i) & 65535`,
    the very expression each `ix_rationales_fingerprint_block_<i>` is on (migration 0016), so a query that
    compares it uses the index (constants inline: a bound parameter would not match the index)."""
    shifted = rationales.c.fingerprint.op(">>")(literal_column(str(16 * i))) if i else rationales.c.fingerprint
    return shifted.op("&")(literal_column("65535"))



checks = Table(
    "checks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rationale_id", String(40), ForeignKey("rationales.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("blocking", Boolean, nullable=False, default=False),
    Column("score", Float),
    Column("detail", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index(None, "rationale_id"),
)

assignments = Table(
    "assignments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("rationale_id", String(40), ForeignKey("rationales.id"), nullable=False),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("reviewer_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("status", String(20), nullable=False),  # open | submitted | expired | released
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("submitted_at", DateTime(timezone=True)),
    Index(None, "rationale_id", "status"),
    Index(None, "reviewer_id", "status"),
    Index(None, "status", "expires_at"),  # lease expiry sweeps run on every assignment
)

reviews = Table(
    "reviews",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("rationale_id", String(40), ForeignKey("rationales.id"), nullable=False),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("assignment_id", String(40), ForeignKey("assignments.id")),
    Column("reviewer_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("scores", JSON, nullable=False),
    Column("comments", JSON, nullable=False),
    Column("edited_text", Text),
    Column("seconds_spent", Float),
    Column("rubric_version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("steps", JSON),  # the reviewer's step marks (domain/steps.StepMark.to_dict), null when none
    UniqueConstraint("rationale_id", "reviewer_id"),
    Index(None, "item_id", "rationale_id"),  # reviews and rounds per item, from the index alone (migration 0011)
    Index(None, "created_at"),  # what arrived since a kept scan state's watermark (migration 0012)
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("rationale_id", String(40), ForeignKey("rationales.id")),
    Column("decided_by", String(100), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index(None, "created_at"),  # what arrived since a kept scan state's watermark (migration 0012)
)

calibration = Table(
    "calibration",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False, unique=True),
    Column("rationale_id", String(40), ForeignKey("rationales.id"), nullable=False),
    Column("expect", String(10), nullable=False),  # good | bad: the known truth about this version
    Column("note", Text, nullable=False, default=""),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index(None, "project_id", "created_at"),  # the queue's probe lookup on every lease (migration 0010)
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("item_id", String(40)),
    Column("kind", String(50), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("before", JSON),
    Column("after", JSON),
    Column("detail", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index(None, "item_id"),
    Index(None, "project_id", "kind"),
)

llm_cache = Table(
    "llm_cache",
    metadata,
    Column("request_hash", String(64), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("response", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# --- web app (issue 4): accounts, sessions, tokens, autosaved drafts --------------------------------

app_secrets = Table(
    "app_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),  # e.g. the cookie-signing key, generated on first start
    Column("created_at", DateTime(timezone=True), nullable=False),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the session id (the cookie holds the id, signed)
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index(None, "user_id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 of the bearer token
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # login | personal
    Column("name", String(100), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Index(None, "user_id"),
)

review_drafts = Table(
    "review_drafts",
    metadata,
    Column("rationale_id", String(40), ForeignKey("rationales.id"), primary_key=True),
    Column("reviewer_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("assignment_id", String(40), ForeignKey("assignments.id")),
    Column("body", JSON, nullable=False),  # verdict, scores, comments, edited_text as last typed
    Column("seconds_spent", Float, nullable=False, default=0.0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(100), nullable=False),
    Column("client", String(100), nullable=False),
    Column("succeeded", Boolean, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index(None, "username", "at"),
    Index(None, "client", "at"),
)

# --- review state that the queue and regeneration read (migration 0006) -----------------------------

#: one row per extra reviewer consensus (or adaptive allocation) asked for on a version: the queue
#: reads this on every lease instead of searching the event log
extra_reviewer_requests = Table(
    "extra_reviewer_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("rationale_id", String(40), ForeignKey("rationales.id"), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("actor", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # set while the item is out of review (store/items.py moves it with the item's state): the lease reads
    # the open requests from the partial index below, not every request the project ever made (0013)
    Column("closed_at", DateTime(timezone=True), nullable=True),
    Index(None, "rationale_id"),
    Index(None, "project_id", "item_id"),
)
Index("ix_extra_reviewer_requests_open", extra_reviewer_requests.c.project_id, extra_reviewer_requests.c.id,
      sqlite_where=extra_reviewer_requests.c.closed_at.is_(None),
      postgresql_where=extra_reviewer_requests.c.closed_at.is_(None))

#: the merged reviewer feedback consensus computed for a version it sent back: what guided
#: regeneration renders (domain/consensus.Feedback)
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("rationale_id", String(40), ForeignKey("rationales.id"), nullable=False),
    Column("body", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index(None, "item_id"),
)

# --- the privacy gate (migration 0009) --------------------------------------------------------------

#: one row per scan that found identifiers before an LLM request: `held` (gate = block: nothing was sent;
#: the item waits in state `held`) or `flagged` (gate = flag: sent, findings recorded); an admin resolves a
#: hold as `released`, `edited` or `excluded`. Findings keep type, span, score and a digest, never the text.
privacy_holds = Table(
    "privacy_holds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # draft | regenerate | judge: the request that was scanned
    Column("gate", String(10), nullable=False),  # block | flag
    Column("status", String(20), nullable=False),  # held | flagged | released | edited | excluded
    Column("resume_state", String(20)),  # where a released item resumes (domain/lifecycle.RESUME_AFTER_HOLD)
    Column("endpoint", String(300), nullable=False),  # where the request was to go (scheme://host:port)
    Column("findings", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_by", String(200)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("reason", Text),
    Index(None, "project_id", "status"),
    Index(None, "item_id"),
)

#: an item's earlier contents: an admin's edit (the privacy gate's "edit its text") keeps what it replaced
item_revisions = Table(
    "item_revisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(40), ForeignKey("items.id"), nullable=False),
    Column("revision", Integer, nullable=False),  # 1: the content as imported
    Column("question", Text, nullable=False),
    Column("options", JSON, nullable=False),
    Column("answer_text", Text),
    Column("context", Text),
    Column("reference_explanation", Text),
    Column("replaced_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("replaced_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("item_id", "revision"),
)

#: a project's review scan kept up to date (analytics/kept.py, store/scanstate.py): the counts behind agreement,
#: reviewer statistics, the dashboard and the dataset card, with the watermarks of what they include
scan_states = Table(
    "scan_states",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("rubric_key", String(64), nullable=False),  # sha256 of the rubric the counts were made with
    Column("format", Integer, nullable=False),  # the body's format version
    Column("revision", Integer, nullable=False),  # +1 on every write: the optimistic check
    Column("reviews_mark", DateTime(timezone=True)),  # the newest review included (null: none)
    Column("decisions_mark", DateTime(timezone=True)),  # the newest decision included (null: none)
    Column("body", Text, nullable=False),  # the counts: base64 of zlib-compressed JSON (never pickle)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: a project's last reviewer-reliability fit (analytics/reliability.py, store/evidencefits.py): reused by
#: other processes until the reviews grow by a tenth (at least 50) past `fitted_at`
evidence_fits = Table(
    "evidence_fits",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("rubric_key", String(64), nullable=False),  # sha256 of the rubric the fit was made with
    Column("fitted_at", Integer, nullable=False),  # the reviews counted when the model was fitted
    Column("counted", Integer, nullable=False),  # the reviews counted when the row was written
    Column("newest", DateTime(timezone=True)),  # the newest created_at among them (null: none)
    Column("at_newest", Integer, nullable=False),  # how many of them carry exactly that instant
    Column("body", Text, nullable=False),  # the model: JSON (prevalence, offsets, sources)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

#: the project's items grouped as `stats.item_groups` groups them (migration 0015): kept by database triggers in
#: the transaction of every change that moves an item between groups; '' stands for "none" in decision_kind and
#: origin, "(none)" for an unset specialty; a group with no items is deleted
item_tallies = Table(
    "item_tallies",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("specialty", String(200), primary_key=True),
    Column("state", String(20), primary_key=True),
    Column("decision_kind", String(20), primary_key=True),
    Column("decided", Integer, primary_key=True),  # 1: the decision names a version
    Column("version_found", Integer, primary_key=True),  # 1: that version's row exists
    Column("origin", String(20), primary_key=True),  # the decided version's origin
    Column("rounds", Integer, primary_key=True),  # distinct reviewed versions
    Column("n_items", Integer, nullable=False),
    Column("n_reviews", Integer, nullable=False),
    Index("ix_item_tallies_empty", "project_id", sqlite_where=text("n_items = 0"),
          postgresql_where=text("n_items = 0")),
    info={"derived": True},  # written by triggers only (a copy inserts the rows it is derived from)
)

#: the same per distinct (item, source) pair, by state and rounds (migration 0015)
source_tallies = Table(
    "source_tallies",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("source", String(100), primary_key=True),
    Column("state", String(20), primary_key=True),
    Column("rounds", Integer, primary_key=True),
    Column("n_items", Integer, nullable=False),
    Column("n_reviews", Integer, nullable=False),
    Index("ix_source_tallies_empty", "project_id", sqlite_where=text("n_items = 0"),
          postgresql_where=text("n_items = 0")),
    info={"derived": True},
)

#: a project's versions per (origin, model, prompt hash) with their tokens (migration 0015): what the dataset
#: card's drafting provenance reads; '' with *_set 0 stands for an unset model or prompt hash
version_tallies = Table(
    "version_tallies",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("origin", String(20), primary_key=True),
    Column("model_set", Integer, primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("prompt_set", Integer, primary_key=True),
    Column("prompt_hash", String(64), primary_key=True),
    Column("n_versions", Integer, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    info={"derived": True},
)

#: a project's reviews ('review') and consensus or adjudication decisions ('accepted') per day (date(created_at)),
#: migration 0015: what the dashboard's progress chart reads
day_tallies = Table(
    "day_tallies",
    metadata,
    Column("project_id", Integer, primary_key=True),
    Column("kind", String(20), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("n", Integer, nullable=False),
    info={"derived": True},
)
