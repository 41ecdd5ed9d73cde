"""TEMPORARY during the restructure: re-exports of the store modules. Deleted when every caller imports
the owning module (store/items.py, store/projects.py, store/decisions.py ...)."""

from clinreason.store.common import NotFoundError, StaleStateError, now  # noqa: F401
from clinreason.store.decisions import add_event, add_events, item_events  # noqa: F401
from clinreason.store.items import get_item, item_source_rows, transition_item, transition_items  # noqa: F401
from clinreason.store.projects import (  # noqa: F401
    add_rubric_version,
    ensure_project,
    get_project,
    latest_rubric,
    require_project,
)
from clinreason.store.readmodels import status_counts  # noqa: F401
