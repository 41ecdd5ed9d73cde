from __future__ import annotations

import pytest

from clinreason.config import ProjectConfig
from clinreason.demo import samples_dir
from clinreason.stages.ingest import import_path


@pytest.fixture
def pc() -> ProjectConfig:
    return ProjectConfig()


@pytest.fixture
def imported(engine, project):
    """The bundled samples, imported: 25 items in 'imported'."""
    import_path(engine, project="default", path=samples_dir(), fmt="auto")
    return project
