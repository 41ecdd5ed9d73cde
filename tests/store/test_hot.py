"""The review path's statements run on the driver's cursor (store/hot.py) give what `conn.execute` gives: every
read is run both ways and compared, a whole simulated project is written both ways and compared, errors are
SQLAlchemy's, and every hot statement the review path uses really runs on the cursor."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, select

from clinreason.stages.simulate import run_simulation
from clinreason.store import db as dbm
from clinreason.store import readmodels
from clinreason.store.hot import Hot
from clinreason.store.tables import reviews

pytestmark = pytest.mark.store


def _simulated(db_url, monkeypatch, *, hot: bool, record: list | None = None):
    """A small adaptive simulation kept in `db_url`: its outcome and its stored reviews."""
    real = Hot.run

    def run(self, conn, params=None):
        if record is not None and getattr(self.statement, "is_select", False):
            record.append((self, dict(params or {}), real(self, conn, params).all()))
            return real(self, conn, params)
        return real(self, conn, params) if hot else conn.execute(self.statement, params or {})

    monkeypatch.setattr(Hot, "run", run)
    result = run_simulation(policy="adaptive", n_items=40, seed=5, db_url=db_url, project="hot")
    monkeypatch.setattr(Hot, "run", real)
    return result


def _stored(db_url):
    engine = dbm.make_engine(db_url)
    try:
        with engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT id FROM projects").scalar_one()
            found = [(r.item_id, r.rationale_id, r.verdict, r.scores, r.steps) for r in
                     readmodels.project_reviews(conn, project_id=pid)]
            decided = conn.exec_driver_sql("SELECT item_id, kind FROM decisions ORDER BY item_id").all()
            states = conn.exec_driver_sql("SELECT id, state, strikes FROM items ORDER BY id").all()
            open_requests = conn.exec_driver_sql(
                "SELECT item_id FROM extra_reviewer_requests WHERE closed_at IS NULL ORDER BY id").all()
        return sorted(found, key=repr), decided, states, open_requests
    finally:
        engine.dispose()


def test_a_simulated_project_is_written_the_same_on_the_cursor_as_through_sqlalchemy(monkeypatch, tmp_path):
    on_cursor, through = f"sqlite:///{tmp_path / 'hot.db'}", f"sqlite:///{tmp_path / 'plain.db'}"
    hot = _simulated(on_cursor, monkeypatch, hot=True)
    plain = _simulated(through, monkeypatch, hot=False)
    assert hot.to_dict() == plain.to_dict()
    written = _stored(on_cursor)
    assert written == _stored(through)
    assert written[0] and written[1]  # something was reviewed and decided


def test_every_read_on_the_cursor_equals_sqlalchemys_and_none_falls_back(db_url, monkeypatch):
    record: list = []
    _simulated(db_url, monkeypatch, hot=True, record=record)
    assert len({id(h) for h, _, _ in record}) >= 8  # the lease's and the submission's reads
    engine = dbm.make_engine(db_url)
    try:
        with engine.begin() as conn:  # read again now, both ways, with the parameters of the run
            for hot, params, _ in record[::7]:
                on_cursor = hot.run(conn, params)
                through = conn.execute(hot.statement, params)
                assert [tuple(r) for r in on_cursor.all()] == [tuple(r) for r in through.all()], str(hot.statement)
                assert type(on_cursor).__name__ == "HotResult"
    finally:
        engine.dispose()
    fell_back = {str(h.statement)[:60]: h.fell_back() for h in Hot.made if h.fell_back()}
    assert fell_back == {}


def test_a_constraint_violation_on_the_cursor_is_sqlalchemys_integrity_error(db_url, monkeypatch):
    _simulated(db_url, monkeypatch, hot=True)
    from clinreason.store.reviews import _ADD_REVIEW

    engine = dbm.make_engine(db_url)
    try:
        with engine.begin() as conn:
            row = conn.execute(select(reviews)).mappings().first()
            with pytest.raises(exc.IntegrityError):
                _ADD_REVIEW.run(conn, dict(row))  # the same id again
    finally:
        engine.dispose()
