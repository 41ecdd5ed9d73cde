"""The admin dashboard stores the reviewer-reliability fit it made (evidence_fits), for the other workers and
the next process; a reviewer's dashboard, which shows no reliability, fits nothing and stores nothing."""

from __future__ import annotations

from sqlalchemy import select

from clinreason.analytics import reliability
from clinreason.store.tables import evidence_fits
from web.test_dashboard_steps import _review


def _stored(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(evidence_fits.c.fitted_at, evidence_fits.c.body)).all()


def test_the_admin_dashboard_keeps_its_fit(client, seed, engine):
    admin = seed.user("boss", role="admin")
    alice = seed.user("alice")
    seed.user("bob")
    item, rat = seed.item()
    _review(engine, item, rat, "alice", None)
    _review(engine, item, rat, "bob", None)
    reliability._EVIDENCE_CACHE.clear()
    assert client.get("/dashboard", headers=alice["auth"]).status_code == 200
    assert _stored(engine) == []
    assert client.get("/dashboard", headers=admin["auth"]).status_code == 200
    [(fitted_at, body)] = _stored(engine)
    assert fitted_at == 2 and reliability.decode_model(body) is not None
    reliability._EVIDENCE_CACHE.clear()
