"""The kept review scan brought up to date, and its agreement report worked out, in a child process while the
caller goes on in its own read snapshot: the export writes its rows on one core while the dataset card's
numbers are added up on the other.

The child is a fresh interpreter (`python -m clinreason.analytics.kept_child`), not a fork: nothing of the
caller's open connections or threads is carried into it. It reads in a snapshot of its own, taken once it
has started, so it may see rows the caller's snapshot does not (a review committed in between). Reviews and
decisions are append-only, and a kept state lists by id every row it counted that was created in the last
`kept.LAG` (`kept.Marks.recent`). So `Pending.finish` takes the child's state only if every such row is one
the caller sees too; then it advances the state by what the caller sees and the child did not (`kept.advance`),
which makes it the caller's own. Otherwise — the child saw more, failed, or read another rubric — `finish`
gives None and the caller adds the reviews up itself, as it would without a child. The answer is the same
either way; only where the work ran differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import Connection, Engine

from clinreason.analytics import kept
from clinreason.analytics.scan import rubric_dimensions, with_reviewers
from clinreason.store import scanstate

#: below this many reviews (and wherever a kept state for the rubric is stored) the caller adds them up
#: itself: starting an interpreter costs about a second of CPU, more than a small project's whole scan
MIN_REVIEWS = 20_000
#: how long `finish` waits for the child before doing the work itself
WAIT_SECONDS = 600.0


def worth_a_child(conn: Connection, *, project_id: int, rubric_body: dict[str, Any],
                  min_reviews: int | None = None) -> bool:
    """Whether the scan is worth a child: no usable kept state is stored (so it is a full scan) and the project
    has at least `min_reviews` reviews (`MIN_REVIEWS` by default; counted no further than that)."""
    wanted = MIN_REVIEWS if min_reviews is None else min_reviews
    if scanstate.available(conn) and kept.usable(scanstate.load(conn, project_id=project_id),
                                                 kept.rubric_key(rubric_body)):
        return False
    return scanstate.has_reviews(conn, project_id=project_id, at_least=wanted)


@dataclass
class Result:
    update: kept.Update
    #: the child's agreement report, where nothing arrived between its snapshot and the caller's (else None:
    #: the caller works it out from `update.scan`, the intervals the child computed being in its memo)
    report: dict[str, Any] | None


class Pending:
    """A child at work; `finish` collects it (once), `close` stops it if it is still running."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc

    def finish(self, conn: Connection, *, project_id: int, rubric_body: dict[str, Any]) -> Result | None:
        """The child's scan made the caller's (on `conn`, the caller's snapshot), or None where it cannot be."""
        try:
            out, _ = self.proc.communicate(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.close()
            return None
        if self.proc.returncode != 0:
            return None
        try:
            data = json.loads(out)
            key = kept.rubric_key(rubric_body)
            if data["project_id"] != project_id or data["rubric_key"] != key:
                return None
            dims, scale = rubric_dimensions(rubric_body)
            state = kept.decode(data["state"], dims=dims, scale=scale)
        except (ValueError, KeyError, TypeError):  # CorruptState is a ValueError
            return None
        since = kept.since_marks(conn, project_id=project_id, state=state)
        arrived = _arrived_if_seen(state, since)
        if arrived is None:
            return None
        moved = kept.advance(conn, project_id=project_id, state=state, since=since) if arrived else False
        update = kept.Update(scan=with_reviewers(conn, project_id, state.raw), state=state,
                             base_revision=data["base_revision"], changed=bool(data["worth_saving"]) or moved,
                             rebuilt=bool(data["rebuilt"]), rubric_key=key, storable=bool(data["storable"]))
        return Result(update=update, report=None if arrived else data["report"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _arrived_if_seen(state: kept.KeptState,
                     since: tuple[list[scanstate.Arrival], list[scanstate.Arrival]]) -> bool | None:
    """None if the state counted a row the caller's snapshot does not have among `since` (what it sees after
    the watermarks: the child's snapshot was the later one); else whether it sees rows the state has not
    counted."""
    arrived = False
    for marks, found in zip((state.reviews, state.decisions), since):
        seen = {a.id for a in found}
        if not marks.recent.keys() <= seen:
            return None
        arrived = arrived or len(seen) > len(marks.recent)
    return arrived


def start(engine: Engine, *, project_id: int, rubric_body: dict[str, Any]) -> Pending:
    """Start the child on the engine's database (its URL, password included, goes through a pipe, not argv)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen([sys.executable, "-m", "clinreason.analytics.kept_child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    request = {"url": engine.url.render_as_string(hide_password=False), "project_id": project_id,
               "rubric_body": rubric_body}
    stdin = cast(IO[bytes], proc.stdin)
    try:
        stdin.write(json.dumps(request, default=str).encode())
        stdin.close()
    except OSError:  # the child died at once: finish sees its exit status
        pass
    proc.stdin = None  # written and closed: `communicate` is to read the answer only
    return Pending(proc)


def _child() -> int:
    from clinreason.analytics.agreement import report_from_scan
    from clinreason.store import db

    request = json.loads(sys.stdin.buffer.read())
    engine = db.make_engine(request["url"])
    project_id, rubric_body = int(request["project_id"]), request["rubric_body"]
    with db.read_snapshot(engine) as conn:
        update = kept.bring_up_to_date(conn, project_id=project_id, rubric_body=rubric_body)
        report = report_from_scan(update.scan)  # its pair intervals go into the state's memo
    body = {"project_id": project_id, "rubric_key": update.rubric_key, "state": kept.encode(update.state),
            "base_revision": update.base_revision, "worth_saving": update.worth_saving,
            "rebuilt": update.rebuilt, "storable": update.storable, "report": report}
    sys.stdout.buffer.write(json.dumps(body).encode())
    sys.stdout.flush()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
