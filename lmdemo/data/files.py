"""The checks every user-supplied file gets before any parser sees it."""

from __future__ import annotations

from pathlib import Path

from lmdemo.errors import InputError


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
    if b"\x00" in raw[:8192]:
        raise InputError(f"{path.name} looks binary; upload UTF-8 text (.txt, .csv, .jsonl).")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path.name} is not UTF-8 (bad byte on line {line}); save it as UTF-8.") from None
