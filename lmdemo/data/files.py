"""The checks every user-supplied file gets before any parser sees it."""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import Iterator

from lmdemo.errors import InputError

_SNIFF_BYTES = 8192  # a NUL byte this early means binary, not text


def check_size(path: Path, max_bytes: int) -> None:
    """Present, not empty, not over ``max_bytes``."""
    if not path.is_file():
        raise InputError(f"File {str(path)!r} does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path.name} is empty (0 bytes).")
    if size > max_bytes:
        raise InputError(f"{path.name} is {size / 2**20:.1f} MB; the limit is {max_bytes // 2**20} MB.")


def read_text(path: str | Path, max_bytes: int) -> str:
    """A text file's content after the size checks, refusing binary and non-UTF-8 content with the line at fault."""
    path = Path(path)
    check_size(path, max_bytes)
    raw = path.read_bytes()
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise _binary(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, raw[: exc.start].count(b"\n") + 1) from None


def text_lines(path: str | Path, max_bytes: int, max_line_chars: int) -> Iterator[str]:
    """A text file's lines, streamed (line endings kept, for `csv`), with the checks of `read_text`.

    A line over ``max_line_chars`` is refused rather than read, so one endless line costs no more than that.
    """
    path = Path(path)
    check_size(path, max_bytes)
    with open(path, "rb") as raw:
        if b"\x00" in raw.read(_SNIFF_BYTES):
            raise _binary(path)
        raw.seek(0)
        stream = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        number = 0
        try:
            while line := stream.readline(max_line_chars + 1):
                number += 1
                if len(line) > max_line_chars:
                    raise InputError(f"{path.name}: line {number:,} is over {max_line_chars:,} characters.")
                yield line
        except UnicodeDecodeError:  # the wrapper decodes ahead, so find the line of the bad byte from the start
            raise _not_utf8(path, _bad_byte_line(path)) from None


def _bad_byte_line(path: Path) -> int:
    """The line of a file's first invalid UTF-8 byte, read in chunks."""
    decoder, lines = codecs.getincrementaldecoder("utf-8")(), 1
    with open(path, "rb") as raw:
        while chunk := raw.read(2**16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:  # exc.object is the decoder's held-back bytes (never b"\n") + chunk
                return lines + exc.object[: exc.start].count(b"\n")
            lines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:  # cut off inside a character at the very end
            pass
    return lines


def _binary(path: Path) -> InputError:
    return InputError(f"{path.name} looks binary; upload UTF-8 text (.txt, .csv, .jsonl).")


def _not_utf8(path: Path, line: int) -> InputError:
    return InputError(f"{path.name} is not UTF-8 (bad byte on line {line}); save it as UTF-8.")
