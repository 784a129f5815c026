"""Training-data files from anonymous visitors are read streamed and bounded: bombs are refused cheaply.

The Parquet bombs are read in a child process whose peak resident memory (VmHWM) is measured from just before
the read, so the numbers are this reader's and nothing else's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmdemo.data import tabular
from lmdemo.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20
PEAK_MB = 300  # what a refused bomb may cost; the bombs below decode to 1-200 GB
PROBE = r"""
import json, sys, time
import pyarrow.compute, pyarrow.parquet  # loaded before the baseline, as in the running app
from lmdemo.data import tabular
from lmdemo.errors import InputError

def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) / 1024

try:  # "5" resets VmHWM to the current RSS; without it the baseline is RSS, which only overstates growth
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
base, start = status("VmRSS"), time.monotonic()
try:
    table = tabular.read_table(sys.argv[1])
    message = f"read {len(table.rows)} rows"
except InputError as exc:
    message = str(exc)
print(json.dumps({"message": message, "peak_mb": status("VmHWM") - base, "seconds": time.monotonic() - start}))
"""


def _probe(path: Path) -> dict:
    """read_table(path) in a fresh process: its message, peak memory growth (MB) and time."""
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{path.name}: {result}")  # -s shows the measured peak
    return result


def _refused_cheaply(path: Path, *needles: str, peak_mb: float = PEAK_MB) -> dict:
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc (Linux)")
    result = _probe(path)
    for needle in needles:
        assert needle in result["message"], result
    assert result["peak_mb"] < peak_mb, result
    assert result["seconds"] < 30, result
    return result


def _rows(n: int) -> list[dict]:
    return [{"text": f"Review number {i} was {'fine' if i % 2 else 'awful'}.", "label": ("neg", "pos")[i % 2]}
            for i in range(n)]


# ---------------------------------------------------------------- Parquet bombs

def test_parquet_with_5000_columns_is_refused_before_reading_rows(tmp_path):
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({f"c{i}": pa.array(["x"] * 3) for i in range(5_001)}), path)
    assert path.stat().st_size < 2 * MB
    _refused_cheaply(path, "wide.parquet has 5,001 columns; the limit is 200")


def test_parquet_metadata_too_large_is_refused_before_parsing(tmp_path, monkeypatch):
    """Tens of thousands of columns make a footer whose parsing alone costs hundreds of MB: its length is read first."""
    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({f"c{i}": pa.array(["x"]) for i in range(5_001)}), path)
    monkeypatch.setattr(tabular, "MAX_PARQUET_FOOTER", 256 * 1024)  # this file's footer is ~750 KB
    with pytest.raises(InputError, match="Parquet metadata is 0.7 MB .*too many columns or row groups"):
        tabular.read_table(path)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"text,label\nnot,parquet\n")
    with pytest.raises(InputError, match="garbage.parquet is not a Parquet file"):
        tabular.read_table(garbage)


@pytest.mark.parametrize("arrow_schema", [True, False], ids=["with-arrow-schema", "bare-parquet"])
def test_parquet_dictionary_bomb_is_refused_with_bounded_memory(tmp_path, arrow_schema):
    """One 1 MB string, dictionary-encoded, repeated over 200,000 rows: a few KB on disk, 200 GB decoded."""
    rows = 200_000
    text = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array(["y" * MB]))
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"label": pa.array(["a", "b"] * (rows // 2)), "text": text}), path,
                   compression="zstd", store_schema=arrow_schema)
    assert path.stat().st_size < 100_000
    _refused_cheaply(path, "bomb.parquet: row 1, column 'text' holds 1,048,576 characters; a cell may hold at most")


def test_parquet_of_compressible_plain_strings_is_refused_from_its_metadata(tmp_path):
    """Not dictionary-encoded: 110 copies of 1 MB compress to little, but the metadata says what they expand to."""
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": ["z" * MB] * 110, "label": ["a"] * 110}), path, compression="zstd",
                   use_dictionary=False)
    assert path.stat().st_size < 1 * MB
    _refused_cheaply(path, "plain.parquet: its first 110 rows take 115 MB uncompressed; the limit is 100 MB")


def test_parquet_over_the_total_text_cap_is_refused(tmp_path):
    """Cells under the cell cap, but 2,000 of 90,000 characters: 180 million in all."""
    rows = 2_000
    text = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array(["w" * 90_000]))
    path = tmp_path / "total.parquet"
    pq.write_table(pa.table({"text": text, "label": ["a", "b"] * (rows // 2)}), path, store_schema=False)
    _refused_cheaply(path, "rows hold over 100 million characters of text")


# ---------------------------------------------------------------- text files

@pytest.mark.parametrize("size", [110_000, MB], ids=["over-the-cap", "over-the-csv-module-limit"])
@pytest.mark.parametrize("column", ["text", "label"])
def test_csv_with_a_huge_cell_is_refused_naming_row_and_column(tmp_path, size, column):
    big = "x" * size
    row = f'"{big}",neg' if column == "text" else f'fine,"{big}"'
    path = tmp_path / "big-cell.csv"
    path.write_text("text,label\nok,pos\n" + row + "\nlast,neg\n")
    shown = f"{size:,}" if size < 131_072 else "over 131,072"
    with pytest.raises(InputError, match=f"big-cell.csv: row 2 \\(line 3\\), column '{column}' holds {shown} "
                                         "characters; a cell may hold at most 100,000"):
        tabular.read_table(path)


def test_jsonl_with_a_huge_cell_or_line_is_refused(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"text": "ok", "label": "a"}) + "\n" + json.dumps({"text": "x" * MB, "label": "b"}))
    with pytest.raises(InputError, match="big.jsonl: row 2 \\(line 2\\), column 'text' holds 1,048,576 characters"):
        tabular.read_table(path)
    path.write_text("y" * (5 * MB))  # one 5 MB line: refused before it is held whole
    with pytest.raises(InputError, match="big.jsonl: line 1 is over 4,000,000 characters"):
        tabular.read_table(path)


def test_one_endless_line_is_refused_having_read_only_the_cap(tmp_path):
    """45 MB without a newline (under the CLI's 50 MB): only the first 4 million characters are ever held."""
    path = tmp_path / "endless.csv"
    path.write_bytes(b"text,label\n" + b"x" * (45 * MB) + "😀".encode())  # held whole, 4 bytes a character
    _refused_cheaply(path, "endless.csv: line 2 is over 4,000,000 characters", peak_mb=60)


def test_a_csv_row_spread_over_a_million_lines_is_refused(tmp_path):
    """Quoted newlines make one row of 1.5 million short fields: each line is short, the row is not."""
    path = tmp_path / "spread.csv"
    path.write_text("text,label\nok,a\n" + ",".join(['"a\n"'] * 1_500_000) + "\n")
    with pytest.raises(InputError, match="spread.csv: the row starting on line 3 is over 4,000,000 characters"):
        tabular.read_table(path)


def test_files_with_5000_columns_are_refused(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(5_000)) + "\n" + ",".join("1" * 5_000) + "\n")
    with pytest.raises(InputError, match="wide.csv has 5,000 columns; the limit is 200"):
        tabular.read_table(path)
    path = tmp_path / "wide.jsonl"
    path.write_text('{"text": "a", "label": "b"}\n' + json.dumps({f"c{i}": 1 for i in range(5_000)}) + "\n")
    with pytest.raises(InputError, match="wide.jsonl has 5,002 columns \\(by row 2\\); the limit is 200"):
        tabular.read_table(path)


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    else:
        sep = "\t" if path.suffix == ".tsv" else ","
        path.write_text("text" + sep + "label\n" + "".join(f"{r['text']}{sep}{r['label']}\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["many.csv", "many.tsv", "many.jsonl", "many.json", "many.parquet"])
def test_a_long_file_is_read_to_the_row_cap_with_a_note(tmp_path, name):
    path = _write(tmp_path / name, _rows(200_001))
    start = time.monotonic()
    table = tabular.read_table(path)
    assert len(table.rows) == tabular.MAX_ROWS == 20_000
    assert table.rows[-1] == _rows(20_000)[-1]
    of = " of 200,001" if name.endswith(".parquet") else ""
    assert table.notes == [f"{name}: read the first 20,000 rows{of}; a demo fine-tune takes at most 20,000."]
    assert time.monotonic() - start < 20
    rows, columns = tabular.read_rows(path)  # the old shape, for its callers
    assert len(rows) == 20_000 and columns == ["text", "label"]
    data = tabular.prepare(path, "classification")  # the note reaches the plan (CLI and Fine-tune tab show it)
    assert table.notes[0] in data.notes and len(data.train) + len(data.validation) == 20_000


def test_non_utf8_far_into_the_file_names_its_line(tmp_path):
    path = tmp_path / "late.csv"
    path.write_bytes(("text,label\n" + "fine,pos\n" * 4_998).encode() + "Café,neg\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"late.csv is not UTF-8 \(bad byte on line 5000\); save it as UTF-8"):
        tabular.read_table(path)


# ---------------------------------------------------------------- normal files, unchanged

@pytest.mark.parametrize("name, content, columns, rows", [
    ("a.csv", '\ufefftext,label\r\n"hello, world",pos\r\n\r\n"two\nlines",neg\r\nshort\r\n', ["text", "label"],
     [{"text": "hello, world", "label": "pos"}, {"text": "two\nlines", "label": "neg"},
      {"text": "short", "label": None}]),
    ("a.tsv", 'text\tlabel\nhello, world\tpos\n"tab\there"\tneg\n', ["text", "label"],
     [{"text": "hello, world", "label": "pos"}, {"text": "tab\there", "label": "neg"}]),
    ("dup.csv", "text,text,\na,b,c\n", ["text", "text.1", "Unnamed: 2"],
     [{"text": "a", "text.1": "b", "Unnamed: 2": "c"}]),
    ("a.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": 0, "x": [1, 2]}\n', ["text", "label", "x"],
     [{"text": "a", "label": 1, "x": None}, {"text": "b", "label": 0, "x": [1, 2]}]),
    ("a.json", '[\n {"text": "a", "label": "x"},\n {"text": "b",\n  "label": "y"}\n]\n', ["text", "label"],
     [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]),
])
def test_normal_text_files_read_as_before(tmp_path, name, content, columns, rows):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", newline="")
    table = tabular.read_table(path)
    assert (table.columns, table.rows, table.notes) == (columns, rows, [])


def test_normal_parquet_reads_as_before(tmp_path):
    import pandas as pd

    path = tmp_path / "p.parquet"
    pd.DataFrame({"text": ["a", None, "c"], "label": [1, 2, 3], "kind": pd.Categorical(["x", "y", "x"]),
                  "tags": [[1], [2, 3], []]}).to_parquet(path)
    table = tabular.read_table(path)
    assert table.columns == ["text", "label", "kind"]
    assert table.rows == [{"text": "a", "label": 1, "kind": "x"}, {"text": None, "label": 2, "kind": "y"},
                          {"text": "c", "label": 3, "kind": "x"}]
    assert table.notes == ["p.parquet: left out column(s) tags: nested values (lists, structs) are not read."]
