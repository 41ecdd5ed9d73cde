"""A large file's records read in a second process, so that reading, checking and hashing use one core
while the importing process writes on the other.

The reader process (a fresh interpreter: it inherits no engine or connection) runs `read_items` exactly as the importing process would, computes each item's content hash and
id, and sends the entries in batches of `BATCH`, in file order, as plain tuples through a pipe. When the
engine serialises JSON as the reader does (`store.ingest.writes_compact_json`), each record goes as the
rows the store writes for it (`_row`: JSON columns serialised, the event's detail text), with the batch's
gold-position counts and its first entries for the preview: the importing process then only asks which
items exist and inserts. A pipe
holds little, so the reader runs at most about a batch ahead of the writer and memory stays bounded by the
batch. The writer keeps the one transaction and handles every entry as before: a refusal (RecordError)
arrives at the same place in the stream, and an error about the file as a whole (FileFormatError, or any
other exception) is raised in the importing process after the batches read before it, as a single-process
read would raise it.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import subprocess
import sys
from json.encoder import encode_basestring as _QUOTE
from pathlib import Path
from typing import Any, BinaryIO, Callable, Generator, Iterator

from clinreason.domain.items import Item, SourceRef, content_hash, content_hash_with_options, item_id
from clinreason.domain.lifecycle import ItemState
from clinreason.stages.ingest_fields import LABELS
from clinreason.stages.ingest_readers import FileFormatError, RawRecord, RecordError
from clinreason.store.db import _json_dumps as _COMPACT
from clinreason.store.ingest import FLAG_NO_GOLD, compact_options_json, options_json

#: formats whose reader is a plain function of (file, options): read in a second process when large
PARALLEL_FORMATS = ("medqa", "medmcqa", "jsonl", "json", "pubmedqa", "mmlu", "csv", "tsv")
#: a smaller file is read in the importing process (about 5,000 typical records; a process start costs more)
PARALLEL_MIN_BYTES = 2 << 20

Entry = Any  # RecordError | tuple[RawRecord, Item]


def use_reader_process(path: Path, fmt: str) -> bool:
    try:
        return fmt in PARALLEL_FORMATS and path.is_file() and path.stat().st_size >= PARALLEL_MIN_BYTES
    except OSError:
        return False


def _pack(raw: RawRecord, it: Item, project: str) -> tuple[Any, ...]:
    digest = content_hash(it.question, it.options, it.answer_labels, it.answer_text)
    return (raw.number, raw.locator, raw.annotations, it.question, it.options, it.answer_labels, it.answer_text,
            it.language, it.specialty, it.context, it.reference_explanation, it.metadata,
            [(s.source, s.file, s.record, s.subject, s.license) for s in it.sources],
            item_id(project, digest), digest, it.state, compact_options_json(it.options))


def _unpack(t: tuple[Any, ...], options_json: dict[str, str]) -> tuple[RawRecord, Item]:
    (number, locator, annotations, question, options, labels, answer_text, language, specialty, context,
     explanation, metadata, sources, id_, digest, state, options_text) = t
    item = Item(question, options, labels, answer_text, language, specialty, context, explanation, metadata,
                [SourceRef(*s) for s in sources], id_, digest, state)
    if options_text is not None and id_ not in options_json:  # a batch stores an item's first record
        options_json[id_] = options_text
    return RawRecord(number, locator, {}, (), (), annotations), item


_IMPORTED, _ESCALATED = ItemState.IMPORTED.value, ItemState.ESCALATED.value

#: how many of a batch's first valid records come with their full entry too (the import summary's preview)
PREVIEW_ENTRIES = 3


def _row(raw: RawRecord, it: Item, project: str, project_id: int) -> tuple[Any, ...]:
    """One valid record as the store writes it, every JSON column serialised as the engine's compact
    serialiser writes it: (item id, the items row less its two timestamps, the item_sources row less its
    timestamp, the item.imported event's detail, whether the item has no gold answer). The state and flag
    reason are those of a new item; the writer keeps the row only when the item is not stored yet."""
    digest, options_text = content_hash_with_options(it.question, it.options, it.answer_labels, it.answer_text)
    id_ = item_id(project, digest)
    labels = it.answer_labels
    flagged = not (labels or it.answer_text)  # Item.has_gold_answer
    meta = it.metadata
    src = it.sources[0]
    return (id_, (id_, project_id, digest, it.question,
                  options_json(_COMPACT, it.options) if options_text is None else options_text, _labels_json(labels),
                  it.answer_text, it.language, it.specialty, it.context, it.reference_explanation,
                  "{}" if type(meta) is dict and not meta else _COMPACT(meta),
                  _ESCALATED if flagged else _IMPORTED, 0, 0, FLAG_NO_GOLD if flagged else None),
            (id_, src.source, src.subject, src.file, src.record, src.license), _detail_json(src), flagged)


#: a file's few answer-label sets and (source, file) pairs, each serialised once (bounded: cleared when full)
_LABELS_JSON: dict[tuple[str, ...], str] = {}
_DETAIL_PREFIX: dict[tuple[str, str], str] = {}
_MEMO_MAX = 4096


def _labels_json(labels: list[str]) -> str:
    """`_COMPACT(labels)`, from a memo for label sets of text."""
    if not all(type(label) is str for label in labels):
        return _COMPACT(labels)
    key = tuple(labels)
    text = _LABELS_JSON.get(key)
    if text is None:
        if len(_LABELS_JSON) >= _MEMO_MAX:
            _LABELS_JSON.clear()
        text = _LABELS_JSON[key] = _COMPACT(labels)
    return text


def _detail_json(src: SourceRef) -> str:
    """`_COMPACT({"source": ..., "file": ..., "record": ...})`: the item.imported event's detail, written
    directly for text values (the encoder's own string function, keys in that order)."""
    source, file, record = src.source, src.file, src.record
    if type(source) is not str or type(file) is not str or type(record) is not str:
        return _COMPACT({"source": source, "file": file, "record": record})
    prefix = _DETAIL_PREFIX.get((source, file))
    if prefix is None:
        if len(_DETAIL_PREFIX) >= _MEMO_MAX:
            _DETAIL_PREFIX.clear()
        prefix = _DETAIL_PREFIX[(source, file)] = f'{{"source":{_QUOTE(source)},"file":{_QUOTE(file)},"record":'
    return prefix + _QUOTE(record) + "}"


def count_positions(positions: dict[str, int], fewest: int | None, it: Item) -> int | None:
    """Count the item's gold answers by option position into `positions`; returns the fewest options
    among `fewest` and the item's (what ImportSummary counts, in either process)."""
    if not it.options:
        return fewest
    keys = list(it.options)
    for label in it.answer_labels:
        if label in keys and keys.index(label) < len(LABELS):
            position = LABELS[keys.index(label)]
            positions[position] = positions.get(position, 0) + 1
    return len(keys) if fewest is None else min(fewest, len(keys))


def unpack_entry(packed: tuple[Any, ...]) -> tuple[RawRecord, Item]:
    """A record `_pack` packed, as `read_items` gives it (its content hash and id set)."""
    return _unpack(packed, {})


def _reader(channel: BinaryIO, path: Path, fmt: str, options: Any, project: str, batch: int,
            project_id: int | None = None) -> None:
    """The reader process: ('batch', entries, bytes read), ..., then ('end', None, bytes) or an error.
    With `project_id`, rows instead: ('rows', (entries, positions, fewest options, previews), bytes)."""
    moved = [0]

    def send(message: tuple[Any, ...]) -> None:
        pickle.dump(message, channel, protocol=pickle.HIGHEST_PROTOCOL)
        channel.flush()

    def progress(n: int) -> None:
        moved[0] += n

    try:
        from clinreason.stages.ingest_formats import read_items

        entries = read_items(path, fmt, options=options, progress=progress)
        batches = _entry_batches(entries, project, batch) if project_id is None else \
            _row_batches(entries, project, batch, project_id)
        for kind, payload in batches:  # each sent with the bytes read since the one before
            send((kind, payload, moved[0]))
            moved[0] = 0
        send(("end", None, moved[0]))
    except BrokenPipeError:  # the importing process stopped reading (it refused the import)
        return
    except FileFormatError as exc:  # its subclasses are built from parts: send what it says
        send(("file_error", str(exc), moved[0]))
    except Exception as exc:  # noqa: BLE001 - raised again in the importing process
        try:
            blob = pickle.dumps(exc)
            pickle.loads(blob)
        except Exception:  # noqa: BLE001 - an exception that cannot be pickled
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        send(("error", exc, moved[0]))


def _entry_batches(entries: Any, project: str, batch: int) -> Iterator[tuple[str, Any]]:
    """('batch', entries packed by `_pack`), `batch` entries at a time."""
    out: list[Any] = []
    for entry in entries:
        out.append(entry if isinstance(entry, RecordError) else _pack(entry[0], entry[1], project))
        if len(out) >= batch:
            yield "batch", out
            out = []
    if out:
        yield "batch", out


def _row_batches(entries: Any, project: str, batch: int, project_id: int) -> Iterator[tuple[str, Any]]:
    """('rows', (entries as `_row` builds them, gold positions, fewest options, the first entries packed for
    the preview)), `batch` entries at a time."""
    out: list[Any] = []
    positions: dict[str, int] = {}
    fewest: int | None = None
    previews: list[tuple[int, tuple[Any, ...]]] = []
    for entry in entries:
        if isinstance(entry, RecordError):
            out.append(entry)
        else:
            raw, it = entry
            if len(previews) < PREVIEW_ENTRIES:
                previews.append((len(out), _pack(raw, it, project)))
            out.append(_row(raw, it, project, project_id))
            fewest = count_positions(positions, fewest, it)
        if len(out) >= batch:
            yield "rows", (out, positions, fewest, previews)
            out, positions, fewest, previews = [], {}, None, []
    if out:
        yield "rows", (out, positions, fewest, previews)


def child_main() -> None:
    """Entry point of the reader process: sys.path, then the arguments, come pickled on stdin; the
    messages go out on what was stdout (stdout itself then points at stderr, so nothing else lands there)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the importing process's to handle: it stops this one
    # this process only builds short-lived, acyclic tuples and strings: the cyclic collector runs less often
    # (every 50,000 new containers instead of 700; what it would find is still found), the modules loaded
    # so far are never scanned again
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)
    channel = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    os.dup2(2, 1)
    args = pickle.load(sys.stdin.buffer)
    try:
        _reader(channel, **args)
    finally:
        try:
            channel.close()
        except BrokenPipeError:
            pass


_BOOT = ("import pickle, sys; sys.path[:0] = pickle.load(sys.stdin.buffer); "
         "from clinreason.stages.ingest_parallel import child_main; child_main()")


def read_batches(path: Path, fmt: str, *, options: Any, project: str, batch: int,
                 progress: Callable[[int], None] | None, options_json: dict[str, str],
                 project_id: int | None = None, extras: dict[str, Any] | None = None
                 ) -> Generator[list[Entry], None, None]:
    """Batches of entries, as `read_items` would give them, each item's content_hash and id already set;
    `options_json` holds, for the batch just yielded, each item's options as the store writes them.

    The reader is a fresh interpreter (`python -c`), not a multiprocessing child: nothing of this process
    (an engine, open connections, the calling script's __main__) is inherited or run again."""
    proc = subprocess.Popen([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            close_fds=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        try:
            pickle.dump([p for p in sys.path if p], proc.stdin)
            pickle.dump({"path": path, "fmt": fmt, "options": options, "project": project, "batch": batch,
                         "project_id": project_id}, proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        while True:
            try:
                kind, payload, moved = pickle.load(proc.stdout)
            except EOFError:
                raise RuntimeError(f"the reader process of {path.name} ended unexpectedly "
                                   f"(exit code {proc.wait()})") from None
            if progress and moved:
                progress(moved)
            if kind == "batch":
                options_json.clear()  # the batch before has been written
                yield [e if isinstance(e, RecordError) else _unpack(e, options_json) for e in payload]
            elif kind == "rows":
                entries, positions, fewest, previews = payload
                if extras is not None:
                    extras.update(positions=positions, fewest=fewest, previews=previews)
                yield entries
            elif kind == "end":
                return
            elif kind == "file_error":
                raise FileFormatError(payload)
            else:
                raise payload
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
