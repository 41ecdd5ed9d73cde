"""A local journal of LLM responses that have arrived but are not yet in the database.

Why it exists: a paid response must never be asked for twice, yet storing each one before its
concurrency slot is freed leaves the slot idle while the batched database write runs. So the runner
appends every response here the moment it arrives (one JSON line, copied into a memory-mapped file:
the kernel's page cache holds it from then on), frees the slot, and lets the batched writer store it
later. The process may then die at any moment — SIGKILL included: the page cache outlives the process,
no fsync is needed for a process death (a power cut is another matter; then the item is drafted again)
— and the next run on this host stores what the dead one had received before it claims any work, so
only requests that were really in flight are sent again.

Layout. Each run writes numbered segment files named ``<host>~<pid>~<token>~<seq>.jsonl`` (JSON lines;
one whose writer died ends in zero bytes, and perhaps an entry cut short). The writer seals the current
segment when it takes a batch and deletes it once that batch is stored, so a healthy run leaves
nothing behind. A segment whose process is gone (or a run of this process that has ended) is an
orphan; a run adopts orphans by renaming them into its own name (atomic, so two runs never both adopt
one) before storing their entries.

Where: beside a SQLite database file, in ``<database file>.responses/``; for a server database
(PostgreSQL) in ``$XDG_STATE_HOME/clinreason/journal/<database key>/`` (``~/.local/state/...`` by
default), unless the caller names a directory. The key keeps two databases' journals apart. The
directory exists only while a run has entries in it (or a dead run left some). A restart under another
user, or on another machine, does not see a dead worker's journal: those items are drafted again once
their claims are taken over, as they would be without a journal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy.engine import URL

from clinreason.store.work import pid_alive

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
#: tokens of the journals open in this process: their segments are live, not orphans
_OPEN: set[str] = set()


def default_directory(url: URL, *, cwd: Path | None = None) -> Path | None:
    """Where the journal for the database at `url` lives; None for an in-memory SQLite database,
    which dies with the process and so has nothing to recover."""
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return None
        path = ((cwd or Path.cwd()) / database).resolve()
        return path.with_name(path.name + ".responses")
    return user_state_dir() / "journal" / database_key(url)


def user_state_dir() -> Path:
    """This user's state directory for clinreason (XDG: `$XDG_STATE_HOME`, else ~/.local/state): the
    same whichever directory a worker is started from, so a restart finds what a dead worker left."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "clinreason"


def database_key(url: URL) -> str:
    """A short name for one database (driver, user, host, port, name — never the password), so that
    the journals of two databases in the same state directory are never mixed up."""
    blob = url.render_as_string(hide_password=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _segment_owner(path: Path) -> tuple[str, int, str] | None:
    """(host, pid, token) from a segment's name; None for a file that is not a segment."""
    parts = path.name[: -len(_SUFFIX)].split("~")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def is_orphan(path: Path) -> bool:
    """A segment of this host whose writer is gone: its process died, or it is this process and the
    run that wrote it has ended. Other hosts' segments are never touched (their pids mean nothing here)."""
    owner = _segment_owner(path)
    if owner is None:
        return False
    host, pid, token = owner
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return token not in _OPEN
    return not pid_alive(pid)


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every complete entry of a segment. What follows the last newline is either the unused, zeroed
    end of the segment or an entry cut short by a kill; neither is an entry (a cut one is drafted again)."""
    *lines, rest = path.read_bytes().split(b"\n")
    if rest.strip(b"\x00"):
        log.warning("%s: the last entry is incomplete (its writer was killed mid-entry); skipped", path)
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(json.loads(line))
        except ValueError:
            log.warning("%s: line %d is not a journal entry; skipped", path, number)
    return entries


class _Segment:
    """One segment file, preallocated and mapped into memory. An entry is a copy into the page cache
    shared with the kernel: it survives the death of the process like a write() would, but costs no
    system call, so the event loop that appends never has to hand the GIL over and wait to get it back
    from the thread that is storing the previous batch. Closing cuts the file to what was written."""

    def __init__(self, path: Path, size: int):
        self.path, self.size, self.used = path, size, 0
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)  # a full disk fails here, not as SIGBUS on a later copy
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def fits(self, size: int) -> bool:
        return self.used + size <= self.size

    def write(self, data: bytes) -> None:
        self._map[self.used:self.used + len(data)] = data
        self.used += len(data)

    def close(self) -> None:
        self._map.close()
        os.truncate(self.path, self.used)


class ResponseJournal:
    """One run's journal: `append` an entry when a response arrives, `seal` what was appended when it
    goes to the database, `discard` the sealed segments once it is stored."""

    #: bytes preallocated per segment: many batches' worth of ordinary answers; a larger one gets its own
    SEGMENT_BYTES = 1 << 20

    def __init__(self, directory: Path):
        self.directory = directory
        self.token = uuid.uuid4().hex[:12]
        self._prefix = f"{socket.gethostname()}~{os.getpid()}~{self.token}~"
        self._seq = 0
        self._current: _Segment | None = None  # opened by the first append after a seal
        self._full: list[Path] = []  # segments closed because the next entry did not fit, not yet sealed
        _OPEN.add(self.token)

    def _next_path(self) -> Path:
        self._seq += 1
        return self.directory / f"{self._prefix}{self._seq}{_SUFFIX}"

    def append(self, entry: dict[str, Any]) -> None:
        """One line, in the operating system's hands when this returns."""
        data = (json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        if self._current is not None and not self._current.fits(len(data)):
            self._current.close()
            self._full.append(self._current.path)
            self._current = None
        if self._current is None:
            self._current = self._new_segment(max(self.SEGMENT_BYTES, len(data)))
        self._current.write(data)

    def _new_segment(self, size: int) -> _Segment:
        """The directory is made on demand (and removed by `close` when empty), so that a database's
        folder does not keep an empty one."""
        path = self._next_path()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            return _Segment(path, size)
        except FileNotFoundError:  # another run removed the empty directory just now
            self.directory.mkdir(parents=True, exist_ok=True)
            return _Segment(path, size)

    def seal(self) -> list[Path]:
        """Close the segments written since the last seal and return them; the next append starts a
        new one."""
        sealed, self._full = self._full, []
        if self._current is not None:
            self._current.close()
            sealed.append(self._current.path)
            self._current = None
        return sealed

    def discard(self, segments: list[Path]) -> None:
        """The segments' entries are stored: they are no longer needed for recovery."""
        for segment in segments:
            segment.unlink(missing_ok=True)

    def adopt_orphans(self) -> Iterator[Path]:
        """Take over the orphaned segments of this directory one by one, renamed into this journal's
        name so that a second run recovering at the same time skips them, and so that they are
        recovered again if this run dies before discarding them."""
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            if path.name.startswith(self._prefix) or not is_orphan(path):
                continue
            adopted = self._next_path()
            try:
                path.rename(adopted)
            except FileNotFoundError:  # another run adopted it first
                continue
            yield adopted

    def close(self) -> None:
        """End of the run. Segments that still hold entries stay on disk and, no longer open, are
        orphans that the next run recovers."""
        self.discard([segment for segment in self.seal() if segment.stat().st_size == 0])
        _OPEN.discard(self.token)
        try:
            self.directory.rmdir()
        except OSError:  # not empty (another run's or a dead run's segments), or never made
            pass


class NoJournal:
    """For a database that dies with the process (in-memory SQLite): there is nothing to recover, so
    nothing is written."""

    def append(self, entry: dict[str, Any]) -> None:
        pass

    def seal(self) -> list[Path]:
        return []

    def discard(self, segments: list[Path]) -> None:
        pass

    def adopt_orphans(self) -> Iterator[Path]:
        return iter(())

    def close(self) -> None:
        pass


def open_journal(url: URL, directory: Path | None = None) -> ResponseJournal | NoJournal:
    """The journal of a run against the database at `url`, in `directory` or the default place."""
    directory = directory or default_directory(url)
    return ResponseJournal(directory) if directory is not None else NoJournal()
