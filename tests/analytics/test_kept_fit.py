"""The reliability fit kept between processes (analytics/reliability.py, store/evidencefits.py): the next
process — the next `clinreason stats`, another web worker — takes the stored fit instead of reading every vote
again, and gets the same numbers; a stored fit that no longer stands (the reviews grew by a tenth, the rubric
changed, the body is not a fit) is refitted and replaced; an older fit never overwrites a newer one; a
database without the table, or one refusing the write, still answers."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update
from typer.testing import CliRunner

from analytics import reviewdata
from clinreason.analytics import reliability
from clinreason.analytics.reliability import decode_model, encode_model, evidence_model, keep_fit
from clinreason.cli import app
from clinreason.domain.allocation import EvidenceModel, Rates
from clinreason.store import evidencefits
from clinreason.store import projects as store_projects
from clinreason.store.tables import evidence_fits, rationales, reviews, users

runner = CliRunner()


@pytest.fixture
def seeded(engine, project):
    reviewdata.build(engine, project["id"], n_items=60, seed=5)
    reliability._EVIDENCE_CACHE.clear()
    yield engine, project["id"]
    reliability._EVIDENCE_CACHE.clear()


@pytest.fixture
def fits(monkeypatch):
    """How many times the votes were read and fitted."""
    calls = []
    real = reliability._fit

    def counted(conn, project_id, rubric_body):
        calls.append(project_id)
        return real(conn, project_id, rubric_body)

    monkeypatch.setattr(reliability, "_fit", counted)
    return calls


def _model(engine, pid) -> EvidenceModel:
    with engine.connect() as conn:
        return evidence_model(conn, pid)


def _new_process() -> None:
    reliability._EVIDENCE_CACHE.clear()


def _stored(engine, pid):
    with engine.connect() as conn:
        return evidencefits.load(conn, project_id=pid)


def _review_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(reviews)).scalar_one()


def add_reviews(engine, n: int, *, name: str) -> None:
    """`n` reviews by a new reviewer on the first `n` versions, stamped after every review there."""
    with engine.begin() as conn:
        newest = conn.execute(select(func.max(reviews.c.created_at))).scalar_one()
        uid = conn.execute(insert(users).values(username=name, role="reviewer", specialties=["cardiology"],
                                                password_hash="x", active=True, created_at=reviewdata.T0)
                           ).inserted_primary_key[0]
        versions = conn.execute(select(rationales.c.id, rationales.c.item_id).order_by(rationales.c.id)
                                .limit(n)).all()
        assert len(versions) == n
        for k, (rid, item_id) in enumerate(versions):
            conn.execute(insert(reviews).values(
                id=f"{name}-{k}", rationale_id=rid, item_id=item_id, reviewer_id=uid,
                verdict="accept" if k % 3 else "regenerate",
                scores={d: 4 if k % 3 else 2 for d in reviewdata.DIMS}, comments={}, seconds_spent=30.0,
                rubric_version=1, created_at=newest + timedelta(minutes=k + 1)))


def test_the_next_process_takes_the_stored_fit_and_reports_the_same(seeded, fits, db_url, tmp_path):
    engine, pid = seeded

    def stats() -> dict:
        result = runner.invoke(app, ["stats", "--json", "--db", db_url, "--config", str(tmp_path / "absent.toml")])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    first = stats()
    assert len(fits) == 1
    row = _stored(engine, pid)
    assert row is not None and row.fitted_at == row.counted == _review_count(engine)
    fitted = decode_model(row.body)
    assert fitted is not None and fitted.sources  # a real fit: reviewers with their rates

    _new_process()
    assert stats() == first
    assert len(fits) == 1  # the second process read the stored fit, not the votes
    _new_process()
    model = _model(engine, pid)
    assert len(fits) == 1
    assert (model.prevalence, model.offsets, model.sources) == (fitted.prevalence, fitted.offsets, fitted.sources)


def test_a_stored_fit_stands_until_the_reviews_grow_by_a_tenth(seeded, fits):
    engine, pid = seeded
    _model(engine, pid)
    assert keep_fit(engine, pid) is True
    assert keep_fit(engine, pid) is False  # stored already: no second write
    counted = _review_count(engine)
    assert counted < 500  # so the bar is 50 more reviews

    add_reviews(engine, 20, name="few")
    _new_process()
    _model(engine, pid)
    assert len(fits) == 1  # 20 more: the stored fit still stands, carried forward
    assert reliability._EVIDENCE_CACHE[reliability._cache_key(engine, pid)].count == counted + 20

    add_reviews(engine, 40, name="more")  # 60 more than the fit saw
    _new_process()
    refitted = _model(engine, pid)
    assert len(fits) == 2
    assert "more" in refitted.sources and "more" not in decode_model(_stored(engine, pid).body).sources
    assert keep_fit(engine, pid) is True
    row = _stored(engine, pid)
    assert row.fitted_at == counted + 60 and "more" in decode_model(row.body).sources


def test_an_older_fit_does_not_overwrite_a_newer_one(seeded, fits):
    engine, pid = seeded
    _model(engine, pid)  # this process fits on the reviews there now ...
    old = reliability._EVIDENCE_CACHE[reliability._cache_key(engine, pid)]
    add_reviews(engine, 60, name="later")
    _new_process()
    _model(engine, pid)  # ... another fits after 60 more and stores first
    assert keep_fit(engine, pid) is True
    newer = _stored(engine, pid)
    reliability._EVIDENCE_CACHE[reliability._cache_key(engine, pid)] = old  # the first process, late
    assert keep_fit(engine, pid) is False
    assert _stored(engine, pid) == newer


def test_a_fit_of_another_rubric_is_refitted_and_replaced(seeded, fits):
    engine, pid = seeded
    _model(engine, pid)
    keep_fit(engine, pid)
    before = _stored(engine, pid)
    with engine.begin() as conn:
        body = store_projects.latest_rubric(conn, project_id=pid)
        body = {**body, "require_all_accept": not body["require_all_accept"]}
        store_projects.add_rubric_version(conn, project_id=pid, body=body, actor="admin")
    _new_process()
    _model(engine, pid)
    assert len(fits) == 2  # the stored fit was made with the old rubric
    assert keep_fit(engine, pid) is True  # replaced although it counted as many reviews
    after = _stored(engine, pid)
    assert after.rubric_key != before.rubric_key


@pytest.mark.parametrize("body", ["not json", "[]", json.dumps({"prevalence": 2.0, "offsets": {}, "sources": {}}),
                                  json.dumps({"prevalence": 0.5, "offsets": {"a": "x"}, "sources": {}}),
                                  json.dumps({"prevalence": 0.5, "offsets": {}, "sources": {"a": [0.5]}})])
def test_a_stored_body_that_is_not_a_fit_is_refitted_and_replaced(seeded, fits, body):
    engine, pid = seeded
    _model(engine, pid)
    keep_fit(engine, pid)
    good = _stored(engine, pid).body
    with engine.begin() as conn:
        conn.execute(update(evidence_fits).where(evidence_fits.c.project_id == pid).values(body=body))
    _new_process()
    model = _model(engine, pid)
    assert len(fits) == 2 and model.sources
    assert keep_fit(engine, pid) is True
    assert decode_model(_stored(engine, pid).body) == decode_model(good)


def test_the_encoding_reads_back_bit_for_bit():
    model = EvidenceModel(prevalence=0.1 + 0.2, offsets={"王医生": -1 / 3, "b": 0.0},
                          sources={"王医生": Rates(0.987654321012345, 1e-17), "checks:answer": Rates(1.0, 0.0)})
    back = decode_model(encode_model(model))
    assert back is not None
    assert (back.prevalence, back.offsets, back.sources) == (model.prevalence, model.offsets, model.sources)


def test_a_database_before_migration_0014_fits_in_each_process(tmp_path, fits):
    from store.migration_steps import downgraded_to

    from clinreason.config import ProjectConfig

    engine = downgraded_to(tmp_path, "0013")
    pc = ProjectConfig()
    with engine.begin() as conn:
        project, _ = store_projects.ensure_project(conn, name="default", rubric=pc.rubric,
                                                   config=pc.model_dump(mode="json", exclude={"rubric"}))
    reviewdata.build(engine, project["id"], n_items=30, seed=2)
    _new_process()
    model = _model(engine, project["id"])
    assert model.sources and keep_fit(engine, project["id"]) is False
    _new_process()
    _model(engine, project["id"])
    assert len(fits) == 2
    engine.dispose()


def test_a_database_refusing_the_write_still_reports(seeded, fits, monkeypatch):
    from sqlalchemy.exc import OperationalError

    engine, pid = seeded
    model = _model(engine, pid)

    def refuse(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))

    monkeypatch.setattr(evidencefits, "save", refuse)
    assert keep_fit(engine, pid) is False
    assert _stored(engine, pid) is None
    assert _model(engine, pid) == model and len(fits) == 1
