"""What every job shares: the empty-text check, the model pick, sentences, run_to_end, results as dicts.

Every job is a typed request -> typed result. Requests validate in ``__post_init__`` and hold the one set of
defaults that the CLI, the gradio API and the UI all read (:func:`defaults`); results have ``to_dict()``,
the shape the CLI's ``--json`` prints and the API returns. A streaming job yields results as they grow.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterator, TypeVar

from lmdemo.errors import InputError

T = TypeVar("T")
# A sentence ends at . ! ? (followed by space) or at the CJK full stops; abbreviations are rare in demo input.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])")


def require_text(text: str | None, what: str = "text") -> str:
    """The text, or InputError when it is missing or blank."""
    if text is None or not str(text).strip():
        raise InputError(f"The {what} is empty: type some text first.")
    return str(text)


def pick_model(model: str | None, adapter: str | None, default: str) -> tuple[str, str | None]:
    """(model, adapter) for a request: a picked adapter name, folder or Hub repo becomes its base + itself; an
    adapter given alone loads on its own base (not the job's default, which it may not fit)."""
    if adapter:
        model = (model or "").strip()
        if not model:
            from lmdemo.models.adapters import adapter_base, adapter_dir

            model = adapter_base(adapter_dir(adapter))
        return model, adapter
    from lmdemo.models.adapters import resolve_pick

    base, folder = resolve_pick(model)
    return base or default, folder


def split_sentences(text: str) -> list[str]:
    """Sentences of each non-empty line, in order."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(s.strip() for s in _SENTENCE_END.split(line.strip()) if s.strip())
    return out


def token_chunks(tokenizer, text: str, size: int) -> list[str]:
    """Split on paragraph, then sentence, boundaries into pieces of at most ``size`` tokens (a longer sentence is
    cut by tokens)."""
    pieces = [s for para in text.split("\n\n") for s in (split_sentences(para) or [para])]
    chunks, current, used = [], [], 0
    for piece in pieces:
        ids = tokenizer(piece, add_special_tokens=False).input_ids
        n = len(ids)
        parts = [tokenizer.decode(ids[i:i + size]) for i in range(0, n, size)] if n > size else [piece]
        for part in parts:
            m = min(n, size)
            if current and used + m > size:
                chunks.append(" ".join(current))
                current, used = [], 0
            current.append(part)
            used += m
    if current:
        chunks.append(" ".join(current))
    return chunks


def run_to_end(events: Iterator[T]) -> T:
    """Consume a job's stream and return its last (complete) result."""
    last = None
    for last in events:
        pass
    if last is None:
        raise InputError("The job produced no result.")
    return last


def defaults(request_type: type) -> dict[str, Any]:
    """A request type's defaults by field name: what every face (CLI, API, UI) shows before the user types."""
    out = {}
    for f in dataclasses.fields(request_type):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


def as_dict(value: Any) -> Any:
    """JSON-ready copy of a result (dataclasses, tuples and paths turned into plain values)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return {f.name: as_dict(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, dict):
        return {str(k): as_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_dict(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
