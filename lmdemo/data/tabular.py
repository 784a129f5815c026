"""Training data for fine-tuning: files (CSV/TSV/JSONL/JSON/Parquet, streamed with caps), bundled samples or Hub ids
(through `datasets`), checked before training with messages that say exactly what is wrong."""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
from contextlib import closing
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Iterable, Iterator

from lmdemo.errors import InputError
from lmdemo.data.files import check_size, text_lines

MAX_FILE_BYTES = 50 * 2**20
MAX_ROWS = 20_000  # a demo fine-tune takes at most this many rows: a longer file is read this far, with a note
MAX_COLUMNS = 200  # training uses two columns; thousands are a mistake or an attack, refused before reading rows
MAX_CELL_CHARS = 100_000  # a long article fits (an unused column must not sink the file); a 1 MB cell is refused
MAX_TEXT_CHARS = 100_000_000  # all cells read, together: twice a 50 MB CSV, so it bites on expanding Parquet only
MAX_RECORD_CHARS = 4_000_000  # one CSV/JSONL row as written (200 columns of 20,000 characters), read before parsing
MAX_PARQUET_FOOTER = 4 * 2**20  # a 200-column file's metadata is ~30 KB a row group; 4 MB parses in ~70 MB of memory
_BATCH_ROWS = 1024  # Parquet rows decoded at a time
SAMPLES = {
    "topics (4 classes)": ("classification", "topics_train.jsonl", "topics_heldout.jsonl"),
    "sentiment (2 classes)": ("classification", "../sentiment/train.jsonl", "../sentiment/heldout.jsonl"),
    "instructions (short answers)": ("sft", "instructions_train.jsonl", "instructions_heldout.jsonl"),
}
COLUMNS = {"classification": ("text", "label"), "sft": ("prompt", "response"), "translation": ("source", "target"),
           "summarisation": ("source", "target")}


@dataclass
class Table:
    """A file's rows as read, with notes on what was left out."""
    rows: list[dict]
    columns: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainingData:
    task: str
    train: list[dict]
    validation: list[dict]
    columns: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({str(r["label"]) for r in self.train}) if self.task == "classification" else []


def parse_columns(value: str | Iterable[str] | dict | None) -> dict[str, str]:
    """A column mapping (file column -> field) from "old=new, old2=new2", a list of "old=new" or a dict."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs = str(value or "").replace("\n", ",").split(",") if isinstance(value, str) or value is None else value
    mapping = {}
    for pair in pairs:
        if not str(pair).strip():
            continue
        if "=" not in pair:
            raise InputError(f"Columns are FILE_COLUMN=FIELD pairs (e.g. review=text); got {str(pair).strip()!r}")
        old, new = pair.split("=", 1)
        mapping[old.strip()] = new.strip()
    return mapping


def _suffix_format(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
    if suffix not in formats:
        raise InputError(f"{path.name}: unsupported file type {suffix or '(none)'}; use .csv, .jsonl or .parquet.")
    return formats[suffix]


def read_rows(source: str | Path) -> tuple[list[dict], list[str]]:
    """The rows (the first `MAX_ROWS`) and column names of a file or Hub dataset id ("user/name[:split]")."""
    table = read_table(source)
    return table.rows, table.columns


def read_table(source: str | Path) -> Table:
    """`read_rows` plus notes on what was left out (rows past `MAX_ROWS`, nested Parquet columns)."""
    path = Path(str(source)).expanduser()
    try:
        if not path.exists():
            return _read_hub(str(source))
        fmt = _suffix_format(path)
        if fmt == "parquet":
            return _read_parquet(path)
        with closing(text_lines(path, MAX_FILE_BYTES, MAX_RECORD_CHARS)) as lines:
            if fmt == "csv":
                delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
                return _collect(path.name, *_csv_records(path.name, lines, delimiter))
            return _collect(path.name, _json_records(path.name, lines), [])
    except InputError:
        raise
    except Exception as exc:  # parsers raise many types; the first line says what broke
        from lmdemo.models.hub import hub_reachable

        if not path.exists() and not hub_reachable():
            raise InputError(f"Dataset {str(source)!r} is not a local file and the Hub is unreachable (offline).") from None
        raise InputError(f"Could not read {path.name if path.exists() else source}: {str(exc).splitlines()[0]}") from None


def _read_hub(source: str) -> Table:
    import datasets

    from lmdemo.models.hub import read_token

    name, _, split = source.partition(":")
    if "/" not in name:
        raise InputError(f"Data {source!r} is neither a file nor a Hub dataset id (user/name).")
    ds = datasets.load_dataset(name, split=split or "train", token=read_token())
    return _collect(source, ((None, row) for row in ds), list(ds.column_names))


# ---------------------------------------------------------------- bounded reading
# Uploads come from anonymous visitors: every reader stops at `MAX_ROWS` and refuses, before holding them, files
# wider than `MAX_COLUMNS`, cells over `MAX_CELL_CHARS` and more than `MAX_TEXT_CHARS` of text in all.

def _collect(name: str, records: Iterator[tuple[int | None, dict]], columns: list[str]) -> Table:
    """The first `MAX_ROWS` records (line number, row) with the caps checked; a note if more were left."""
    seen = dict.fromkeys(columns)
    _check_width(name, len(seen))
    rows, total, notes = [], 0, []
    for line, row in records:
        if len(rows) == MAX_ROWS:
            notes.append(_rows_note(name))
            break
        seen.update(dict.fromkeys(row))
        _check_width(name, len(seen), len(rows) + 1)
        for column, value in row.items():
            chars = _chars(value)
            if chars > MAX_CELL_CHARS:
                raise _long_cell(name, len(rows) + 1, line, column, chars)
            total += chars
        if total > MAX_TEXT_CHARS:
            raise _too_much_text(name, len(rows) + 1)
        rows.append(row)
    columns = list(seen)  # JSON rows may leave keys out: fill them in, as `datasets` did
    return Table([row if len(row) == len(columns) else {c: row.get(c) for c in columns} for row in rows], columns,
                 notes)


def _chars(value) -> int:
    """A cell's size in characters: text as is, lists and objects as JSON, numbers as nothing."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, dict)):
        return len(json.dumps(value, ensure_ascii=False, default=str))
    return 0


def _check_width(name: str, columns: int, row: int | None = None) -> None:
    if columns > MAX_COLUMNS:
        where = f" (by row {row:,})" if row else ""
        raise InputError(f"{name} has {columns:,} columns{where}; the limit is {MAX_COLUMNS}. "
                         "Keep the ones to train on.")


def _long_cell(name: str, row: int, line: int | None, column: str, chars: int | None = None) -> InputError:
    where = f"row {row:,}" + (f" (line {line:,})" if line else "")
    size = f"{chars:,}" if chars else f"over {csv.field_size_limit():,}"  # past the csv module's own limit
    return InputError(f"{name}: {where}, column {column!r} holds {size} characters; a cell may hold at most "
                      f"{MAX_CELL_CHARS:,}.")


def _too_much_text(name: str, row: int) -> InputError:
    return InputError(f"{name}: its first {row:,} rows hold over {MAX_TEXT_CHARS // 10**6} million characters of "
                      f"text, the limit; keep fewer rows or shorter cells.")


def _rows_note(name: str, total: int | None = None) -> str:
    of = f" of {total:,}" if total else ""
    return f"{name}: read the first {MAX_ROWS:,} rows{of}; a demo fine-tune takes at most {MAX_ROWS:,}."


def _csv_records(name: str, lines: Iterator[str], delimiter: str) -> tuple[Iterator[tuple[int, dict]], list[str]]:
    """A CSV/TSV's header and (line, row) records: values as written, short rows padded with None."""
    record: list[str] = []  # the lines of the record being parsed, to name the column of an over-long cell

    def feed() -> Iterator[str]:
        size = 0
        for line in lines:
            size = len(line) + (size if record else 0)
            record.append(line)
            if size > MAX_RECORD_CHARS:  # a quoted cell running over many lines
                raise InputError(f"{name}: the row starting on line {reader.line_num - len(record) + 2:,} is over "
                                 f"{MAX_RECORD_CHARS:,} characters.")
            yield line

    # The csv module's own field limit (process-wide, 128 Ki by default) is left alone: the cap is checked here.
    reader = csv.reader(feed(), delimiter=delimiter)

    def parse() -> list[str] | None:
        record.clear()
        try:
            return next(reader, None)
        except csv.Error as exc:
            if "field larger than field limit" in str(exc) and not header:
                raise InputError(f"{name}: the header on line {reader.line_num:,} has a name over "
                                 f"{csv.field_size_limit():,} characters.") from None
            if "field larger than field limit" in str(exc):
                column = _long_field(record, delimiter)
                raise _long_cell(name, rows + 1, reader.line_num, header[column] if column < len(header) else
                                 f"#{column + 1}") from None
            raise InputError(f"{name}: line {reader.line_num:,}: {exc}") from None

    rows, header = 0, []
    while (fields := parse()) == []:  # blank lines before the header
        pass
    if fields is None:
        raise InputError(f"{name} has no header row.")
    header = _unique(fields)

    def records() -> Iterator[tuple[int, dict]]:
        nonlocal rows
        while (fields := parse()) is not None:
            if not fields:
                continue
            if len(fields) > len(header):
                raise InputError(f"{name}: line {reader.line_num:,} has {len(fields)} fields; the header has "
                                 f"{len(header)}. Quote cells that hold the delimiter.")
            rows += 1
            yield reader.line_num, dict(zip(header, fields + [None] * (len(header) - len(fields))))

    return records(), header


def _long_field(lines: list[str], delimiter: str) -> int:
    """The index of the first over-long field in one CSV record's raw lines (quotes followed, near enough)."""
    text, quoted, start, index = "".join(lines), False, 0, 0
    for match in re.finditer(f'["{re.escape(delimiter)}]', text):
        if match.group() == '"':
            quoted = not quoted
        elif not quoted:
            if match.start() - start > MAX_CELL_CHARS:
                return index
            index, start = index + 1, match.end()
    return index


def _unique(header: list[str]) -> list[str]:
    """Column names as pandas gives them: blanks "Unnamed: i", repeats "name.1"."""
    names: list[str] = []
    for i, name in enumerate(header):
        name = name or f"Unnamed: {i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}.{n}"
        names.append(name)
    return names


def _json_records(name: str, lines: Iterator[str]) -> Iterator[tuple[int | None, dict]]:
    """Rows of a JSON-lines file, or of a file holding one JSON array of objects."""
    lines, first = iter(lines), True
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if first and line.lstrip().startswith("["):
            yield from ((None, row) for row in _json_array(name, itertools.chain([line], lines)))
            return
        first = False
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{name}: line {number:,} is not valid JSON ({getattr(exc, 'msg', exc)}).") from None
        if not isinstance(row, dict):
            raise InputError(f'{name}: line {number:,} is not a JSON object; write one {{"column": value, ...}} '
                             "per line.")
        yield number, row


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_array(name: str, lines: Iterator[str]) -> Iterator[dict]:
    """The objects of a JSON array, decoded one at a time from a buffer that holds about one of them."""
    decoder, text, pos, count, state, error = json.JSONDecoder(), "", 0, 0, "[", ""

    def more() -> bool:
        """Read on (at least doubling what is held, so a long row is not re-decoded line by line)."""
        nonlocal text, pos
        if len(text) - pos > MAX_RECORD_CHARS:
            raise InputError(f"{name}: row {count + 1:,} of the JSON array is not valid JSON ({error}) or is over "
                             f"{MAX_RECORD_CHARS:,} characters.")
        added, size = [], 0
        for line in lines:
            added.append(line)
            size += len(line)
            if size >= max(len(text) - pos, 2**16):
                break
        text, pos = text[pos:] + "".join(added), 0
        return bool(added)

    while True:
        pos = _SPACE.match(text, pos).end()
        if pos == len(text):
            if not more():
                raise InputError(f"{name}: the JSON array ends early (after {count:,} rows).")
            continue
        char = text[pos]
        if state == "[":
            pos, state = pos + 1, "first"
        elif state == ",":
            if char == "]":
                return
            if char != ",":
                raise InputError(f"{name}: expected , or ] after row {count:,} of the JSON array; found {char!r}.")
            pos, state = pos + 1, "value"
        elif state == "first" and char == "]":
            return
        else:
            try:
                row, pos = decoder.raw_decode(text, pos)
            except ValueError as exc:  # cut off by the buffer's end, or wrong: reading on tells which
                error = getattr(exc, "msg", str(exc))
                if more():
                    continue
                raise InputError(f"{name}: row {count + 1:,} of the JSON array is not valid JSON ({error}).") from None
            if not isinstance(row, dict):
                raise InputError(f"{name}: row {count + 1:,} of the JSON array is not an object "
                                 '{"column": value, ...}.')
            count, state = count + 1, ","
            yield row


def _read_parquet(path: Path) -> Table:
    """The first `MAX_ROWS` rows of a Parquet file, its size claims checked before any data page is read.

    Text columns are read dictionary-encoded and measured before they are turned into Python strings, so a
    small file whose one 1 MB value repeats over a million rows is refused at the cost of the 1 MB.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    check_size(path, MAX_FILE_BYTES)
    name, footer = path.name, _parquet_footer(path)
    if footer > MAX_PARQUET_FOOTER:
        raise InputError(f"{name}: its Parquet metadata is {footer / 2**20:.1f} MB (the limit is "
                         f"{MAX_PARQUET_FOOTER // 2**20} MB): far too many columns or row groups.")
    meta = pq.read_metadata(path)
    _check_width(name, meta.num_columns)
    groups, rows_in, size = [], 0, 0
    for i in range(meta.num_row_groups):
        if rows_in >= MAX_ROWS:
            break
        group = meta.row_group(i)
        groups.append(i)
        rows_in, size = rows_in + group.num_rows, size + group.total_byte_size
    if size > MAX_TEXT_CHARS:
        raise InputError(f"{name}: its first {rows_in:,} rows take {size / 10**6:,.0f} MB "
                         f"uncompressed; the limit is {MAX_TEXT_CHARS // 10**6} MB.")
    schema = meta.schema.to_arrow_schema()
    nested = [f.name for f in schema if _nested(f.type)]
    flat = [f.name for f in schema if not _nested(f.type)]
    text = [f.name for f in schema if _text(f.type)]
    notes = [f"{name}: left out column(s) {', '.join(nested)}: nested values (lists, structs) are not read."
             ] if nested else []
    rows, total = [], 0
    with pq.ParquetFile(path, read_dictionary=text) as reader:  # text stays dictionary-encoded until measured
        for batch in reader.iter_batches(batch_size=_BATCH_ROWS, row_groups=groups, columns=flat):
            batch = batch.slice(0, MAX_ROWS - len(rows))
            for column, array in zip(batch.column_names, batch.columns):
                lengths = _lengths(array)
                if lengths is None:
                    continue
                longest = pc.max(lengths).as_py() or 0
                if longest > MAX_CELL_CHARS:
                    row = pc.index(lengths, longest).as_py()
                    raise _long_cell(name, len(rows) + row + 1, None, column, longest)
                total += pc.sum(lengths).as_py() or 0
            if total > MAX_TEXT_CHARS:
                raise _too_much_text(name, len(rows) + batch.num_rows)
            rows += batch.to_pylist()
            if len(rows) >= MAX_ROWS:
                break
    if meta.num_rows > len(rows) == MAX_ROWS:
        notes.insert(0, _rows_note(name, meta.num_rows))
    return Table(rows, flat, notes)


def _parquet_footer(path: Path) -> int:
    """The length of a Parquet file's metadata, read from its last 8 bytes (before pyarrow parses it)."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - 8))
        tail = handle.read(8)
    if size < 12 or tail[4:] != b"PAR1":
        raise InputError(f"{path.name} is not a Parquet file (it does not end in PAR1).")
    return int.from_bytes(tail[:4], "little")


def _nested(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_nested(kind) or (pa.types.is_dictionary(kind) and pa.types.is_nested(kind.value_type))


def _text(kind) -> bool:
    import pyarrow as pa

    return any(check(kind) for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                         pa.types.is_large_binary))


def _lengths(array):
    """Each text cell's length in characters (bytes for binary), nulls 0; None for a column of numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        values = _lengths(array.dictionary)
        return None if values is None else pc.fill_null(pc.take(values, array.indices), 0)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return pc.fill_null(pc.utf8_length(array), 0)
    if _text(array.type):
        return pc.fill_null(pc.binary_length(array), 0)
    return None


def sample_path(name: str) -> tuple[str, Path, Path]:
    if name not in SAMPLES:
        raise InputError(f"Unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")
    task, train, heldout = SAMPLES[name]
    base = Path(str(files("lmdemo.data").joinpath("samples")))
    return task, (base / train).resolve(), (base / heldout).resolve()


def prepare(source: str | Path, task: str, mapping: dict[str, str] | None = None,
            validation: str | Path | None = None, max_tokens_chars: int = 4000, seed: int = 0) -> TrainingData:
    """Read, rename (``mapping``: file column -> field), check and split the data.

    Without a validation source, a seeded 10 % (at least 1 row) is held back.
    """
    task = {"sentiment": "classification", "summarization": "summarisation"}.get(task, task)
    if task not in COLUMNS:
        raise InputError(f"Unknown fine-tuning task {task!r}; use classification (or sentiment), sft, translation "
                         "or summarisation.")
    table = read_table(source)
    train, notes = _clean(table.rows, table.columns, task, mapping or {}, max_tokens_chars, Path(str(source)).name)
    notes = table.notes + notes
    if validation:
        vtable = read_table(validation)
        val, vnotes = _clean(vtable.rows, vtable.columns, task, mapping or {}, max_tokens_chars,
                             Path(str(validation)).name)
        notes += vtable.notes + vnotes
    else:
        rng = random.Random(seed)
        order = list(range(len(train)))
        rng.shuffle(order)
        cut = max(1, len(train) // 10)
        val = [train[i] for i in order[:cut]]
        train = [train[i] for i in order[cut:]]
    if not train:
        raise InputError("No training rows are left after holding back the validation split.")
    if task == "classification":
        labels = {str(r["label"]) for r in train}
        if len(labels) < 2:
            raise InputError(f"The label column has a single class ({next(iter(labels))!r}); a classifier needs two or more.")
        unseen = {str(r["label"]) for r in val} - labels
        if unseen:
            raise InputError(f"Validation labels {sorted(unseen)} never occur in the training rows.")
    return TrainingData(task, train, val, table.columns, notes)


def _clean(rows: list[dict], columns: list[str], task: str, mapping: dict[str, str], max_chars: int,
           source: str) -> tuple[list[dict], list[str]]:
    """Rows renamed to the task's fields, minus empty and over-long ones (counted in the notes)."""
    wanted = COLUMNS[task]
    inverse = {field_: col for col, field_ in mapping.items()}
    resolved = {f: inverse.get(f, f) for f in wanted}
    missing = [f"{f} (column {c!r})" if c != f else f for f, c in resolved.items() if c not in columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)}; the file has {', '.join(columns) or 'none'}. "
                         f"Map them to {', '.join(wanted)}.")
    clean, empty, long = [], 0, 0
    for row in rows:
        values = {f: row.get(resolved[f]) for f in wanted}
        if any(v is None or not str(v).strip() for v in values.values()):
            empty += 1
            continue
        if any(len(str(v)) > max_chars for v in values.values()):
            long += 1
            continue
        clean.append({f: str(v) for f, v in values.items()})
    notes = []
    if empty:
        notes.append(f"{source}: skipped {empty} row(s) with an empty {' or '.join(wanted)}.")
    if long:
        notes.append(f"{source}: skipped {long} row(s) longer than {max_chars} characters.")
    if not clean:
        raise InputError(f"{source}: no usable rows ({empty} empty, {long} over-long, of {len(rows)}).")
    return clean, notes
