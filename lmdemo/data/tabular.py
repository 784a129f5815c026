"""Training data for fine-tuning: files (CSV/JSONL/Parquet), bundled samples or Hub ids, read through `datasets`,
checked before training with messages that say exactly what is wrong."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Iterable

from lmdemo.errors import InputError
from lmdemo.data.files import check_size, read_text

MAX_FILE_BYTES = 50 * 2**20
MAX_ROWS = 20_000
SAMPLES = {
    "topics (4 classes)": ("classification", "topics_train.jsonl", "topics_heldout.jsonl"),
    "sentiment (2 classes)": ("classification", "../sentiment/train.jsonl", "../sentiment/heldout.jsonl"),
}
COLUMNS = {"classification": ("text", "label"), "sft": ("prompt", "response")}


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


def _check_file(path: Path) -> str:
    """The file's `datasets` format, after the upload checks (text checks for the text formats)."""
    fmt = _suffix_format(path)
    if fmt == "parquet":
        check_size(path, MAX_FILE_BYTES)
    else:
        read_text(path, MAX_FILE_BYTES)
    return fmt


def read_rows(source: str | Path) -> tuple[list[dict], list[str]]:
    """All rows and the column names of a file or Hub dataset id ("user/name[:split]")."""
    import datasets

    from lmdemo.models.hub import read_token

    path = Path(str(source)).expanduser()
    try:
        if path.exists():
            fmt = _check_file(path)
            kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train", **kwargs)
        else:
            name, _, split = str(source).partition(":")
            if "/" not in name:
                raise InputError(f"Data {str(source)!r} is neither a file nor a Hub dataset id (user/name).")
            ds = datasets.load_dataset(name, split=split or "train", token=read_token())
    except InputError:
        raise
    except Exception as exc:  # datasets' parsers raise many types; the first line says what broke
        from lmdemo.models.hub import hub_reachable

        if not path.exists() and not hub_reachable():
            raise InputError(f"Dataset {str(source)!r} is not a local file and the Hub is unreachable (offline).") from None
        raise InputError(f"Could not read {path.name if path.exists() else source}: {str(exc).splitlines()[0]}") from None
    if len(ds) > MAX_ROWS:
        raise InputError(f"{len(ds)} rows is more than the {MAX_ROWS} a demo fine-tune takes; sample it first.")
    return [dict(r) for r in ds], list(ds.column_names)


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
    task = {"sentiment": "classification"}.get(task, task)
    if task not in COLUMNS:
        raise InputError(f"Unknown fine-tuning task {task!r}; use classification (or sentiment) or sft.")
    rows, columns = read_rows(source)
    train, notes = _clean(rows, columns, task, mapping or {}, max_tokens_chars, Path(str(source)).name)
    if validation:
        vrows, vcols = read_rows(validation)
        val, vnotes = _clean(vrows, vcols, task, mapping or {}, max_tokens_chars, Path(str(validation)).name)
        notes += vnotes
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
    return TrainingData(task, train, val, columns, notes)


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
