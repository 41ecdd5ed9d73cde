"""The one check every importer fuzz test makes (tests/security/test_fuzz_importers.py,
tests/ingest/test_fuzz_new_readers.py): whatever the file holds, an import or a clean refusal that wrote
nothing."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import func, select

from clinreason.stages.ingest import ImportAborted, import_path
from clinreason.store.tables import events, item_sources, items, rationales, reviews, users


def row_counts(engine) -> tuple[int, ...]:
    """Rows in every table an import may write (items first)."""
    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (items, item_sources, events, rationales, reviews, users))


def import_or_refusal(engine, path: Path, fmt: str, **kw):
    """Import `path`; on a refusal check that the message is one clean line naming the file (and, for a
    bad record, the record and its field) and that nothing was written; a dry run writes nothing either.
    Any other exception fails the test. Returns the summary, or None when refused."""
    before = row_counts(engine)
    try:
        summary = import_path(engine, project="default", path=path, fmt=fmt, **kw)
    except ImportAborted as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, message
        assert path.name in message, f"the refusal does not name the file: {message}"
        if re.search(r": record \d+", message):
            assert re.search(r": record \d+.*: field '[^']*'", message), f"record named but not the field: {message}"
        assert row_counts(engine) == before, "a refused import wrote something"
        return None
    if kw.get("dry_run"):
        assert row_counts(engine) == before, "a dry run wrote something"
    else:
        assert row_counts(engine)[0] == before[0] + summary.added
    return summary
