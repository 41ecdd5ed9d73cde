"""Item tallies kept in the writing transaction (issue 16, item 4): `stats --json`, `/dashboard` and the card
grouped every item of the project, with its reviews, decision and decided version, on every call (0.8 s at
200k items, linear). Two tables hold those groups' counts and database triggers keep them, in the same
transaction as the change that moves an item from one group to another, whichever code (or SQL prompt)
makes it:

- `item_tallies` (project_id, specialty ("(none)" where unset), state, decision_kind ('' where undecided),
  decided (the decision names a version), version_found (that version's row exists), origin (its origin, ''
  where none), rounds (distinct reviewed versions)): n_items, n_reviews;
- `source_tallies` (project_id, source, state, rounds): n_items, n_reviews; an item counts once under each
  distinct source it was imported from;
- `version_tallies` (project_id, origin, model_set, model, prompt_set, prompt_hash: '' and 0 where the
  model or prompt hash is unset): n_versions, tokens (prompt + completion): what the dataset card's drafting
  provenance reads;
- `day_tallies` (project_id, kind: 'review' or 'accepted' (a consensus or adjudication decision), day:
  date(created_at)): n — the dashboard's reviews and accepted items per day.

A group whose count falls to 0 is deleted in the same trigger (found through the partial indexes
`ix_item_tallies_empty` and `ix_source_tallies_empty`), so the tables are a function of the data alone: the
same rows whatever the history, which is what `migrate-db`'s per-table hash compares.

What moves an item between groups: an item inserted (it has no sources, reviews or decision yet: each of
those refers to it), its state, specialty or project changed, an item deleted; a source row inserted,
changed or deleted (the first or last row of its (item, source) pair); a review inserted (rounds and
reviews); a decision inserted; a version inserted (its version tally), an item moved to another project
(its versions' tallies move with it). Reviews, decisions and rationale versions are never updated or deleted
(migration 0004), so nothing else can. The upgrade fills the tables from the rows already there.

SQLite only, for now. On PostgreSQL the tables are created (the schema is the same everywhere) but stay
empty, no trigger keeps them, and the reads group the rows as before (`store.stats.tallies_kept`). Tried
there as row upserts, the counters became the rows every writer locks: two workers moving items between
the same states took the same few tally rows in opposite orders and deadlocked
(tests/reliability/test_two_workers_pg.py), and every state change would wait for the tally rows' locks
until the other transaction commits. SQLite has one writer at a time, so nothing waits there that did not
already. PostgreSQL wants append-only deltas folded by the readers instead.

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ITEM_KEY = "project_id, specialty, state, decision_kind, decided, version_found, origin, rounds"
SOURCE_KEY = "project_id, source, state, rounds"


def _item_delta(who: dict[str, str], *, specialty: str, sign: str, undecided: bool = False,
                less_reviews: str = "0", less_rounds: str = "0") -> str:
    """One item's contribution to `item_tallies`, added (sign 1) or taken away (sign -1): the item's id,
    project, specialty and state are SQL expressions (OLD.x, NEW.x, a variable); its reviews, decision and
    decided version are read from their tables, less `less_reviews` reviews and `less_rounds` rounds (the
    review just inserted), as undecided when `undecided` (before the decision just inserted)."""
    item, project, state = who["item"], who["project"], who["state"]
    if undecided:
        kind, decided, found, origin = "''", "0", "0", "''"
    else:
        kind = "coalesce(d.kind, '')"
        decided = "CASE WHEN d.rationale_id IS NULL THEN 0 ELSE 1 END"
        found = "CASE WHEN r.id IS NULL THEN 0 ELSE 1 END"
        origin = "coalesce(r.origin, '')"
    return (f"INSERT INTO item_tallies ({ITEM_KEY}, n_items, n_reviews) "
            f"SELECT {project}, coalesce({specialty}, '(none)'), {state}, {kind}, {decided}, {found}, {origin}, "
            f"rv.rounds - ({less_rounds}), {sign}, ({sign}) * (rv.n - ({less_reviews})) "
            f"FROM (SELECT count(*) AS n, count(DISTINCT rationale_id) AS rounds FROM reviews "
            f"WHERE item_id = {item}) AS rv "
            f"LEFT JOIN decisions d ON d.item_id = {item} LEFT JOIN rationales r ON r.id = d.rationale_id "
            f"WHERE {project} IS NOT NULL "
            f"ON CONFLICT ({ITEM_KEY}) DO UPDATE SET n_items = item_tallies.n_items + excluded.n_items, "
            f"n_reviews = item_tallies.n_reviews + excluded.n_reviews")


def _source_delta(who: dict[str, str], *, sign: str, sources: str | None = None,
                  less_reviews: str = "0", less_rounds: str = "0", only_if: str = "") -> str:
    """One item's contribution to `source_tallies` under each distinct source it has (or under the one
    source expression `sources`, when the condition `only_if` holds)."""
    item, project, state = who["item"], who["project"], who["state"]
    src = (f"(SELECT DISTINCT source FROM item_sources WHERE item_id = {item})" if sources is None
           else f"(SELECT {sources} AS source)")
    return (f"INSERT INTO source_tallies ({SOURCE_KEY}, n_items, n_reviews) "
            f"SELECT {project}, s.source, {state}, rv.rounds - ({less_rounds}), {sign}, "
            f"({sign}) * (rv.n - ({less_reviews})) "
            f"FROM {src} AS s, (SELECT count(*) AS n, count(DISTINCT rationale_id) AS rounds FROM reviews "
            f"WHERE item_id = {item}) AS rv "
            f"WHERE {project} IS NOT NULL {only_if} "
            f"ON CONFLICT ({SOURCE_KEY}) DO UPDATE SET n_items = source_tallies.n_items + excluded.n_items, "
            f"n_reviews = source_tallies.n_reviews + excluded.n_reviews")


SWEEP = ("DELETE FROM item_tallies WHERE n_items = 0", "DELETE FROM source_tallies WHERE n_items = 0")


def _item_of(alias: str) -> dict[str, str]:
    return {"item": f"{alias}.id", "project": f"{alias}.project_id", "state": f"{alias}.state"}


def _moves() -> dict[str, list[str]]:
    """The statements each (row-level) trigger runs, by trigger name, with OLD/NEW as the row."""
    first_of_version = ("CASE WHEN (SELECT count(*) FROM reviews x WHERE x.item_id = NEW.item_id "
                        "AND x.rationale_id = NEW.rationale_id) = 1 THEN 1 ELSE 0 END")
    owner = "(SELECT project_id FROM items WHERE id = {0}.item_id)"
    owner_state = "(SELECT state FROM items WHERE id = {0}.item_id)"
    owner_specialty = "(SELECT specialty FROM items WHERE id = {0}.item_id)"

    def pair_alone(alias: str) -> str:  # no other source row of the item names this source
        return (f"NOT EXISTS (SELECT 1 FROM item_sources o WHERE o.item_id = {alias}.item_id "
                f"AND o.source = {alias}.source AND o.id <> {alias}.id)")

    def source_of(alias: str, sign: str) -> str:
        owned = {"item": f"{alias}.item_id", "project": owner.format(alias), "state": owner_state.format(alias)}
        return _source_delta(owned, sign=sign, sources=f"{alias}.source", only_if=f"AND {pair_alone(alias)}")

    review = {"item": "NEW.item_id", "project": owner.format("NEW"), "state": owner_state.format("NEW")}
    return {
        "items_update": [
            _item_delta(_item_of("OLD"), specialty="OLD.specialty", sign="-1"),
            _source_delta(_item_of("OLD"), sign="-1"),
            _item_delta(_item_of("NEW"), specialty="NEW.specialty", sign="1"),
            _source_delta(_item_of("NEW"), sign="1"),
            *SWEEP,
        ],
        "items_delete": [
            _item_delta(_item_of("OLD"), specialty="OLD.specialty", sign="-1"),
            _source_delta(_item_of("OLD"), sign="-1"),
            *SWEEP,
        ],
        "item_sources_update": [source_of("OLD", "-1"), source_of("NEW", "1"), *SWEEP],
        "item_sources_delete": [source_of("OLD", "-1"), *SWEEP],
        "reviews_insert": [
            _item_delta(review, specialty=owner_specialty.format("NEW"), sign="-1", less_reviews="1",
                        less_rounds=first_of_version),
            _source_delta(review, sign="-1", less_reviews="1", less_rounds=first_of_version),
            _item_delta(review, specialty=owner_specialty.format("NEW"), sign="1"),
            _source_delta(review, sign="1"),
            *SWEEP,
        ],
        "decisions_insert": [
            _item_delta(review, specialty=owner_specialty.format("NEW"), sign="-1", undecided=True),
            _item_delta(review, specialty=owner_specialty.format("NEW"), sign="1"),
            *SWEEP,
        ],
    }


#: trigger name -> (table, event, WHEN condition or None); row-level on both backends
ROW_TRIGGERS = {
    "items_update": ("items", "UPDATE OF state, specialty, project_id",
                     "OLD.state IS NOT NEW.state OR OLD.specialty IS NOT NEW.specialty "
                     "OR OLD.project_id IS NOT NEW.project_id"),
    "items_delete": ("items", "DELETE", None),
    "item_sources_update": ("item_sources", "UPDATE OF item_id, source",
                            "OLD.item_id IS NOT NEW.item_id OR OLD.source IS NOT NEW.source"),
    "item_sources_delete": ("item_sources", "DELETE", None),
    "reviews_insert": ("reviews", "INSERT", None),
    "decisions_insert": ("decisions", "INSERT", None),
}

#: an inserted item: no sources, reviews or decision can refer to it yet
NEW_ITEM = (f"INSERT INTO item_tallies ({ITEM_KEY}, n_items, n_reviews) "
            "SELECT {cols}, count(*), 0 FROM {rows} WHERE true "
            f"ON CONFLICT ({ITEM_KEY}) DO UPDATE SET n_items = item_tallies.n_items + excluded.n_items")
NEW_ITEM_COLS = "project_id, coalesce(specialty, '(none)'), state, '', 0, 0, '', 0"

VERSION_KEY = "project_id, origin, model_set, model, prompt_set, prompt_hash"
_VERSION_COLS = ("{p}, {r}.origin, CASE WHEN {r}.model IS NULL THEN 0 ELSE 1 END, coalesce({r}.model, ''), "
                 "CASE WHEN {r}.prompt_hash IS NULL THEN 0 ELSE 1 END, coalesce({r}.prompt_hash, '')")
_VERSION_UPSERT = (f"ON CONFLICT ({VERSION_KEY}) DO UPDATE SET "
                   "n_versions = version_tallies.n_versions + excluded.n_versions, "
                   "tokens = version_tallies.tokens + excluded.tokens")
#: an inserted version, counted under its item's project
NEW_VERSION = (f"INSERT INTO version_tallies ({VERSION_KEY}, n_versions, tokens) "
               f"SELECT {_VERSION_COLS.format(p='i.project_id', r='NEW')}, 1, NEW.prompt_tokens + NEW.completion_tokens "
               f"FROM items i WHERE i.id = NEW.item_id {_VERSION_UPSERT}")


def _moved_versions(project: str, sign: str) -> str:
    """The versions of the item just moved between projects, taken from (-1) or added to (1) `project`."""
    return (f"INSERT INTO version_tallies ({VERSION_KEY}, n_versions, tokens) "
            f"SELECT {_VERSION_COLS.format(p=project, r='r')}, ({sign}) * count(*), "
            f"({sign}) * sum(r.prompt_tokens + r.completion_tokens) FROM rationales r WHERE r.item_id = NEW.id "
            f"GROUP BY 2, 3, 4, 5, 6 {_VERSION_UPSERT}")


DAY_KEY = "project_id, kind, day"
_DAY_UPSERT = f"ON CONFLICT ({DAY_KEY}) DO UPDATE SET n = day_tallies.n + excluded.n"
ACCEPTED = "('consensus', 'adjudication')"
#: an inserted review or accepting decision, counted on its day (a stamp date() cannot read is not counted)
NEW_REVIEW_DAY = (f"INSERT INTO day_tallies ({DAY_KEY}, n) SELECT i.project_id, 'review', date(NEW.created_at), 1 "
                  f"FROM items i WHERE i.id = NEW.item_id AND date(NEW.created_at) IS NOT NULL {_DAY_UPSERT}")
NEW_ACCEPTED_DAY = (f"INSERT INTO day_tallies ({DAY_KEY}, n) SELECT i.project_id, 'accepted', "
                    f"date(NEW.created_at), 1 FROM items i WHERE i.id = NEW.item_id "
                    f"AND date(NEW.created_at) IS NOT NULL {_DAY_UPSERT}")


def _moved_days(project: str, sign: str) -> list[str]:
    return [f"INSERT INTO day_tallies ({DAY_KEY}, n) SELECT {project}, 'review', date(x.created_at), ({sign}) * count(*) "
            f"FROM reviews x WHERE x.item_id = NEW.id AND date(x.created_at) IS NOT NULL GROUP BY 3 {_DAY_UPSERT}",
            f"INSERT INTO day_tallies ({DAY_KEY}, n) SELECT {project}, 'accepted', date(x.created_at), "
            f"({sign}) * count(*) FROM decisions x WHERE x.item_id = NEW.id AND x.kind IN {ACCEPTED} "
            f"AND date(x.created_at) IS NOT NULL GROUP BY 3 {_DAY_UPSERT}"]


MOVE_VERSIONS = [_moved_versions("OLD.project_id", "-1"), _moved_versions("NEW.project_id", "1"),
                 "DELETE FROM version_tallies WHERE n_versions = 0",
                 *_moved_days("OLD.project_id", "-1"), *_moved_days("NEW.project_id", "1"),
                 "DELETE FROM day_tallies WHERE n = 0"]
FILL_DAYS = [f"INSERT INTO day_tallies ({DAY_KEY}, n) SELECT i.project_id, 'review', date(x.created_at), count(*) "
             "FROM reviews x JOIN items i ON i.id = x.item_id WHERE date(x.created_at) IS NOT NULL GROUP BY 1, 2, 3",
             f"INSERT INTO day_tallies ({DAY_KEY}, n) SELECT i.project_id, 'accepted', date(x.created_at), count(*) "
             f"FROM decisions x JOIN items i ON i.id = x.item_id WHERE x.kind IN {ACCEPTED} "
             "AND date(x.created_at) IS NOT NULL GROUP BY 1, 2, 3"]
FILL_VERSIONS = (f"INSERT INTO version_tallies ({VERSION_KEY}, n_versions, tokens) "
                 f"SELECT {_VERSION_COLS.format(p='i.project_id', r='r')}, count(*), "
                 "sum(r.prompt_tokens + r.completion_tokens) FROM rationales r JOIN items i ON i.id = r.item_id "
                 "GROUP BY 1, 2, 3, 4, 5, 6")

#: the backfill: every item's group, from the rows as they are
FILL_ITEMS = (f"INSERT INTO item_tallies ({ITEM_KEY}, n_items, n_reviews) "
              "SELECT i.project_id, coalesce(i.specialty, '(none)'), i.state, coalesce(d.kind, ''), "
              "CASE WHEN d.rationale_id IS NULL THEN 0 ELSE 1 END, CASE WHEN r.id IS NULL THEN 0 ELSE 1 END, "
              "coalesce(r.origin, ''), coalesce(rv.rounds, 0), count(*), coalesce(sum(rv.n), 0) "
              "FROM items i LEFT JOIN (SELECT item_id, count(*) AS n, count(DISTINCT rationale_id) AS rounds "
              "FROM reviews GROUP BY item_id) AS rv ON rv.item_id = i.id "
              "LEFT JOIN decisions d ON d.item_id = i.id LEFT JOIN rationales r ON r.id = d.rationale_id "
              "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8")
FILL_SOURCES = (f"INSERT INTO source_tallies ({SOURCE_KEY}, n_items, n_reviews) "
                "SELECT i.project_id, p.source, i.state, coalesce(rv.rounds, 0), count(*), coalesce(sum(rv.n), 0) "
                "FROM (SELECT DISTINCT item_id, source FROM item_sources) AS p JOIN items i ON i.id = p.item_id "
                "LEFT JOIN (SELECT item_id, count(*) AS n, count(DISTINCT rationale_id) AS rounds "
                "FROM reviews GROUP BY item_id) AS rv ON rv.item_id = i.id GROUP BY 1, 2, 3, 4")


def _create_tables() -> None:
    op.create_table(
        "item_tallies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("specialty", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("decision_kind", sa.String(length=20), nullable=False),
        sa.Column("decided", sa.Integer(), nullable=False),
        sa.Column("version_found", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("n_reviews", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "specialty", "state", "decision_kind", "decided", "version_found",
                                "origin", "rounds", name=op.f("pk_item_tallies")),
    )
    op.create_table(
        "source_tallies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("n_reviews", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "source", "state", "rounds", name=op.f("pk_source_tallies")),
    )
    op.create_table(
        "version_tallies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("model_set", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prompt_set", sa.Integer(), nullable=False),
        sa.Column("prompt_hash", sa.String(length=64), nullable=False),
        sa.Column("n_versions", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "origin", "model_set", "model", "prompt_set", "prompt_hash",
                                name=op.f("pk_version_tallies")),
    )
    op.create_table(
        "day_tallies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "kind", "day", name=op.f("pk_day_tallies")),
    )
    op.create_index("ix_item_tallies_empty", "item_tallies", ["project_id"], sqlite_where=sa.text("n_items = 0"),
                    postgresql_where=sa.text("n_items = 0"))
    op.create_index("ix_source_tallies_empty", "source_tallies", ["project_id"],
                    sqlite_where=sa.text("n_items = 0"), postgresql_where=sa.text("n_items = 0"))


def _sqlite_triggers() -> None:
    moves = _moves()
    for name, (table, event, when) in ROW_TRIGGERS.items():
        cond = f" WHEN {when}" if when else ""
        body = "; ".join(moves[name])
        op.execute(f"CREATE TRIGGER tally_{name} AFTER {event} ON {table} FOR EACH ROW{cond} BEGIN {body}; END")
    new_item = NEW_ITEM.format(cols=NEW_ITEM_COLS.replace("project_id", "NEW.project_id")
                               .replace("specialty", "NEW.specialty").replace("state", "NEW.state"),
                               rows="(SELECT 1) AS one")
    op.execute(f"CREATE TRIGGER tally_items_insert AFTER INSERT ON items FOR EACH ROW BEGIN {new_item}; END")
    op.execute(f"CREATE TRIGGER tally_reviews_day AFTER INSERT ON reviews FOR EACH ROW BEGIN {NEW_REVIEW_DAY}; END")
    op.execute(f"CREATE TRIGGER tally_decisions_day AFTER INSERT ON decisions FOR EACH ROW "
               f"WHEN NEW.kind IN {ACCEPTED} BEGIN {NEW_ACCEPTED_DAY}; END")
    op.execute(f"CREATE TRIGGER tally_rationales_insert AFTER INSERT ON rationales FOR EACH ROW BEGIN {NEW_VERSION}; END")
    op.execute("CREATE TRIGGER tally_items_move AFTER UPDATE OF project_id ON items FOR EACH ROW "
               f"WHEN OLD.project_id IS NOT NEW.project_id BEGIN {'; '.join(MOVE_VERSIONS)}; END")
    new_source = (f"INSERT INTO source_tallies ({SOURCE_KEY}, n_items, n_reviews) "
                  "SELECT i.project_id, NEW.source, i.state, rv.rounds, 1, rv.n FROM items i, "
                  "(SELECT count(*) AS n, count(DISTINCT rationale_id) AS rounds FROM reviews "
                  "WHERE item_id = NEW.item_id) AS rv WHERE i.id = NEW.item_id "
                  f"ON CONFLICT ({SOURCE_KEY}) DO UPDATE SET n_items = source_tallies.n_items + excluded.n_items, "
                  "n_reviews = source_tallies.n_reviews + excluded.n_reviews")
    op.execute(f"CREATE TRIGGER tally_item_sources_insert AFTER INSERT ON item_sources FOR EACH ROW "
               f"WHEN NOT EXISTS (SELECT 1 FROM item_sources o WHERE o.item_id = NEW.item_id "
               f"AND o.source = NEW.source AND o.id <> NEW.id) BEGIN {new_source}; END")


ALL_TRIGGERS = [*ROW_TRIGGERS, "items_insert", "item_sources_insert", "rationales_insert", "items_move",
                "reviews_day", "decisions_day"]


def upgrade() -> None:
    _create_tables()
    if op.get_context().dialect.name != "sqlite":
        return  # kept on SQLite only, for now (see the module's docstring): the tables stay empty
    op.execute(FILL_ITEMS)
    op.execute(FILL_SOURCES)
    op.execute(FILL_VERSIONS)
    for fill in FILL_DAYS:
        op.execute(fill)
    _sqlite_triggers()


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for name in ALL_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS tally_{name}")
    op.drop_table("day_tallies")
    op.drop_table("version_tallies")
    op.drop_table("source_tallies")
    op.drop_table("item_tallies")
