"""A second database to compare an import with: a fresh SQLite file with the default project, whatever
database the test itself runs on."""

from __future__ import annotations


def reference_engine(tmp_path):
    from clinreason.config import ProjectConfig
    from clinreason.store import db
    from clinreason.store import projects as store_projects

    eng = db.make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    db.upgrade(eng)
    pc = ProjectConfig()
    with eng.begin() as conn:
        store_projects.ensure_project(conn, name="default", config=pc.model_dump(mode="json", exclude={"rubric"}),
                                      rubric=pc.rubric)
    return eng
