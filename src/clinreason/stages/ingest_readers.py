"""Reading question-bank files: each reader streams raw records (`RawRecord`: number, locator, fields)
or a `RecordError` for a record that cannot even be read (a truncated line, non-UTF-8 bytes), and
`detect_format` recognises a named layout from the file itself. Turning fields into Items is
ingest_formats.py's work. Nothing here touches the database.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

Progress = Callable[[int], None]  # called with bytes consumed since the last call


class RecordError(ValueError):
    """One bad record: which file, which record, which field, what was expected."""

    def __init__(self, file: str, record: int, field: str, expected: str, got: Any = None, locator: str = ""):
        self.file, self.record, self.field, self.expected, self.got, self.locator = file, record, field, expected, got, locator
        where = f"record {record}" + (f" ({_shown(locator)})" if locator and locator != f"record {record}" else "")
        got_s = "" if got is None else f", got {_short(got)}"
        super().__init__(f"{_shown(file)}: {where}: field '{_shown(field)}': expected {expected}{got_s}")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled by its fields (the reader process of a large import sends refusals to the writer)
        return (RecordError, (self.file, self.record, self.field, self.expected, self.got, self.locator))


class FileFormatError(ValueError):
    """The file as a whole cannot be read in the requested format."""


def _shown(text: str) -> str:
    """A name taken from the file (a record's key, a field) as a message shows it: a line break or another
    unprintable character escaped, so the refusal stays one line."""
    return text if text.isprintable() else repr(text)[1:-1]


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def display_name(path: Path) -> str:
    """The file's name as messages and provenance show it: a name that is not valid UTF-8 on disk
    (Linux keeps such bytes as lone surrogates) gets U+FFFD in their place, so it can be stored and printed."""
    name = path.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name


#: read this much of a text file to tell whether it is UTF-8 at all
_SNIFF_BYTES = 1 << 16
TEXT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".txt")


def utf8_problem(path: Path) -> str | None:
    """Why the start of `path` is not UTF-8 text (None when it is): a UTF-16/32 byte-order mark, NUL bytes
    (UTF-16 without a BOM, or a binary file), or a byte sequence UTF-8 does not allow."""
    import codecs

    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if head.startswith(bom):
            return f"it starts with a {name} byte-order mark"
    nul = head.find(b"\x00")
    if nul >= 0:
        return f"NUL bytes from offset {nul}: UTF-16 or a binary file"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        return f"byte 0x{head[exc.start]:02x} at offset {exc.start}"
    return None


def require_utf8(path: Path) -> None:
    """FileFormatError naming the file when it is not UTF-8 text."""
    why = utf8_problem(path)
    if why is not None:
        raise FileFormatError(f"{display_name(path)}: not UTF-8 text ({why}); re-save it as UTF-8")


@dataclass(slots=True)
class RawRecord:
    number: int  # 1-based record number within the file
    locator: str  # e.g. "line 12", "row 5358", "PMID 21645374"
    fields: dict[str, Any]
    #: a JSON document's records (`--records`): the objects that enclose the record, nearest first, and
    #: the keys the path's `*` matched, in path order (what `--map field=^name` and `^*` read)
    parents: tuple[dict[str, Any], ...] = ()
    matched: tuple[str, ...] = ()
    #: annotation tools (Argilla, Label Studio): the record's drafts and reviews, read by ingest_annotated
    annotations: Any = None



def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook that keeps duplicate keys visible instead of silently keeping the last."""
    plain = dict(pairs)
    return DupDict(pairs) if len(plain) != len(pairs) else plain


class DupDict(dict):
    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        self.pairs = pairs



# --- line and table readers -----------------------------------------------------------------------

#: one decoder for every line (json.loads with a hook builds a new one per call)
_LINE_DECODER = json.JSONDecoder(object_pairs_hook=pairs_hook)


def read_json_lines(path: Path, progress: Progress | None) -> Iterator[RawRecord | RecordError]:
    number = 0
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if progress:
                progress(len(raw))
            if not raw.strip():
                continue
            number += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RecordError(display_name(path), number, "(line)", "UTF-8 text (the file is not UTF-8 here)",
                                  f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}", f"line {line_no}")
                continue
            if "\x00" in text:
                yield RecordError(display_name(path), number, "(line)",
                                  "UTF-8 text without NUL bytes (the file is not UTF-8 here: UTF-16?)",
                                  f"NUL at column {text.index(chr(0)) + 1}", f"line {line_no}")
                continue
            try:
                # json.loads itself only for a line with a BOM (its error message names the BOM)
                obj = json.loads(text, object_pairs_hook=pairs_hook) if text.startswith("\ufeff") \
                    else _LINE_DECODER.decode(text)
            except json.JSONDecodeError as exc:
                yield RecordError(display_name(path), number, "(line)", f"one complete JSON object per line ({exc.msg})",
                                  text.strip()[:40], f"line {line_no}")
                continue
            except RecursionError:
                yield RecordError(display_name(path), number, "(line)", "a JSON object nested less deeply",
                                  None, f"line {line_no}")
                continue
            if not isinstance(obj, dict):
                yield RecordError(display_name(path), number, "(line)", "a JSON object", type(obj).__name__, f"line {line_no}")
                continue
            yield RawRecord(number, f"line {line_no}", obj)


#: the delimiters `--format csv` recognises by itself (`--delimiter` names any other)
DELIMITERS = ",;\t|"
_SNIFF_CHARS = 1 << 16


def delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(delimiter, repr(delimiter))


def parse_delimiter(text: str) -> str:
    """`--delimiter` as typed: one character, or `tab` / `\\t` for a tab."""
    if text.lower() in ("tab", "\\t", "\t"):
        return "\t"
    if len(text) != 1 or text in "\"\r\n" or text.isalnum():
        raise ValueError(f"--delimiter {text!r}: expected one character such as ';' or '|' (or 'tab')")
    return text


def sniff_delimiter(path: Path) -> str:
    """Which of , ; tab | separates the columns of a delimited text file: csv.Sniffer's choice on the
    first 64 KiB when every row then has as many columns as the first (and more than one); otherwise the
    candidate that gives the most columns consistently; ',' when none does (a one-column file)."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            sample = fh.read(_SNIFF_CHARS)
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{display_name(path)}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                              f"{exc.start} of a read block); re-save it as UTF-8") from None
    complete = len(sample) < _SNIFF_CHARS
    if not complete and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = None
    if sniffed is not None and _consistent_columns(sample, sniffed, complete) > 1:
        return sniffed
    scores = [(_consistent_columns(sample, d, complete), -i, d) for i, d in enumerate(DELIMITERS)]
    best = max(scores)
    return best[2] if best[0] > 1 else ","


def _consistent_columns(sample: str, delimiter: str, complete: bool) -> int:
    """The number of columns when every row of `sample` has as many as the first, else 0."""
    import io

    try:
        rows = [r for r in csv.reader(io.StringIO(sample), delimiter=delimiter) if any(c.strip() for c in r)]
    except csv.Error:
        return 0
    if not complete and len(rows) > 1:
        rows = rows[:-1]  # the sample may end inside a quoted cell
    if not rows:
        return 0
    width = len(rows[0])
    return width if all(len(r) == width for r in rows) else 0


def read_csv(path: Path, progress: Progress | None, *, header: bool,
             delimiter: str = ",") -> Iterator[RawRecord | RecordError]:
    number = 0
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            columns: list[str] | None = None
            for row in reader:
                if progress:  # approximate: text mode hides byte offsets while iterating
                    progress(sum(len(c.encode("utf-8")) for c in row) + len(row))
                if columns is None and header:
                    columns = [c.strip() for c in row]
                    continue
                if not any(cell.strip() for cell in row):
                    continue
                number += 1
                locator = f"row {reader.line_num}"
                if header:
                    assert columns is not None
                    if len(row) != len(columns):
                        yield RecordError(display_name(path), number, "(row)", f"{len(columns)} columns as in the header",
                                          len(row), locator)
                        continue
                    yield RawRecord(number, locator, dict(zip(columns, row)))
                else:
                    yield RawRecord(number, locator, {str(i): v for i, v in enumerate(row)})
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{display_name(path)}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                              f"{exc.start} of a read block); re-save it as UTF-8") from None
    except csv.Error as exc:
        raise FileFormatError(f"{display_name(path)}: not a readable CSV file after record {number} ({exc})") from None


def read_xlsx(path: Path) -> Iterator[RawRecord]:
    from zipfile import BadZipFile

    import openpyxl  # light, but only needed here

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (BadZipFile, OSError, KeyError, ValueError) as exc:
        raise FileFormatError(f"{display_name(path)}: not a readable XLSX workbook ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - openpyxl and the XML parser raise many types for a damaged file
        raise FileFormatError(f"{display_name(path)}: not a readable XLSX workbook "
                              f"({type(exc).__name__}: {_one_line(exc)})") from None
    number = 0
    try:
        if not wb.sheetnames:
            return
        ws = wb[wb.sheetnames[0]]
        rows = ws.iter_rows(values_only=True)
        try:
            header = [str(c).strip() if c is not None else "" for c in next(rows)]
        except StopIteration:
            return
        for sheet_row, row in enumerate(rows, 2):
            if row is None or all(c is None or (isinstance(c, str) and not c.strip()) for c in row):
                continue
            number += 1
            yield RawRecord(number, f"sheet row {sheet_row}", dict(zip(header, row)))
    except FileFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged sheet (bad XML, bad zip member) surfaces while reading
        raise FileFormatError(f"{display_name(path)}: damaged XLSX workbook after record {number} "
                              f"({type(exc).__name__}: {_one_line(exc)})") from None
    finally:
        wb.close()


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_parquet(path: Path) -> Iterator[RawRecord]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise FileFormatError("reading Parquet needs pyarrow: pip install 'clinreason[hf]'") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise FileFormatError(f"{display_name(path)}: not a readable Parquet file ({exc})") from None
    number = 0
    try:
        for batch in pf.iter_batches(batch_size=2048):
            for row in batch.to_pylist():
                number += 1
                yield RawRecord(number, f"row {number}", row)
    except Exception as exc:  # noqa: BLE001 - a damaged page or an unreadable value surfaces while reading
        raise FileFormatError(f"{display_name(path)}: damaged Parquet file after record {number} "
                              f"({type(exc).__name__}: {_one_line(exc)})") from None


def read_hf(path: Path) -> Iterator[RawRecord]:
    try:
        import datasets
    except ImportError:
        raise FileFormatError("reading a Hugging Face datasets folder needs `datasets`: pip install 'clinreason[hf]'") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise FileFormatError(f"{display_name(path)}: not a `datasets` folder saved with save_to_disk ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = [(name, ds[name]) for name in ds]
    else:
        splits = [("", ds)]
    number = 0
    try:
        for split, part in splits:
            for i, row in enumerate(part):
                number += 1
                yield RawRecord(number, f"{split + ' ' if split else ''}row {i + 1}".strip(), row)
    except Exception as exc:  # noqa: BLE001 - a damaged arrow shard surfaces while reading
        raise FileFormatError(f"{display_name(path)}: damaged `datasets` folder after record {number} "
                              f"({type(exc).__name__}: {_one_line(exc)})") from None

# --- format detection ---------------------------------------------------

#: formats whose input is a folder, not a file
FOLDER_FORMATS = ("hf", "argilla")


def is_argilla_folder(path: Path) -> bool:
    """A folder written by Argilla 2.x `Dataset.to_disk`: .argilla/settings.json beside records.json."""
    return path.is_dir() and (path / ".argilla" / "settings.json").is_file()


def detect_format(path: Path) -> str | None:
    """Recognise a named layout from the file itself; None when it is not a question file we know."""
    if path.is_dir():
        if is_argilla_folder(path):
            return "argilla"
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return "hf"
        return None
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return "cmexam"
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".tsv":
        return "tsv" if _first_line(path) is not None else None
    if suffix == ".csv":
        row = _first_csv_row(path)
        if row is None:
            return None
        if len(row) == 6 and row[5].strip() in tuple("ABCD"):
            return "mmlu"
        return "csv"
    if suffix in (".jsonl", ".json", ".ndjson"):
        first = _first_line(path)
        if first is None:
            return None
        stripped = first.strip()
        try:
            obj = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            if {"answer_idx", "options", "question"} <= obj.keys():
                return "medqa"
            if {"opa", "opb", "cop"} <= obj.keys():
                return "medmcqa"
            return "jsonl"
        if stripped.startswith("{") and suffix == ".json":
            # a whole-file JSON object: PubMedQA is keyed by PMID with QUESTION inside
            head = _head(path, 4096)
            if re.search(r'"QUESTION"\s*:', head):
                return "pubmedqa"
            return None
        if stripped.startswith("[") and suffix == ".json":
            # one JSON array: a Label Studio export (tasks with data and annotations) or a list of records
            first = _first_element(path)
            if isinstance(first, dict) and isinstance(first.get("data"), dict) \
                    and ("annotations" in first or "predictions" in first):
                return "labelstudio"
            return "json"
        return None
    return None


def _first_csv_row(path: Path) -> list[str] | None:
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            for row in csv.reader(fh):
                if any(cell.strip() for cell in row):
                    return row
    except (UnicodeDecodeError, csv.Error):
        return None
    return None


def _first_line(path: Path) -> str | None:
    try:
        with path.open("r", encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip():
                    return line
    except UnicodeDecodeError:
        return None
    return None


def _first_element(path: Path, limit: int = 1 << 20) -> Any:
    """The first element of a file holding one JSON array, when it is within the first `limit` bytes."""
    text = _head(path, limit).lstrip("\ufeff \t\r\n")
    if not text.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[1:].lstrip())
    except (ValueError, RecursionError):
        return None
    return value


def _head(path: Path, n: int) -> str:
    with path.open("rb") as fh:
        return fh.read(n).decode("utf-8", errors="replace")


def read_pubmedqa(path: Path, progress: Progress | None) -> Iterator[RawRecord | RecordError]:
    try:
        raw = path.read_bytes()
        if progress:
            progress(len(raw))
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{display_name(path)}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{display_name(path)}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} "
                              "(PubMedQA is one JSON object keyed by PMID)") from None
    except RecursionError:
        raise FileFormatError(f"{display_name(path)}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{display_name(path)}: expected one JSON object keyed by PMID")
    for number, (pmid, record) in enumerate(data.items(), 1):
        if not isinstance(record, dict):
            yield RecordError(display_name(path), number, "(record)", "an object with QUESTION, CONTEXTS, final_decision",
                              record, f"PMID {pmid}")
            continue
        yield RawRecord(number, f"PMID {pmid}", record)

