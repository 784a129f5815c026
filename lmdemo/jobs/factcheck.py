"""Fact check for summaries: the numbers and names a summary states, looked for in its source text.

A heuristic, not a parser (no NER model ships with lmdemo). Numbers are digits (``5,000`` = ``5000``,
``12 million`` = ``12,000,000``, ``6%`` = ``6 per cent``) and written numbers (``ten``, ``forty-five``; not
ordinals such as "first", nor "one" alone, which are mostly not figures). Names are runs of capitalised words;
a lone capitalised first word of a sentence ("Officials said") is not taken for one. A number is supported when
the source states the same value; a name when each of its words appears in the source (so "Westgate bakery" is
found in "a bakery in Westgate", and an invented "John Smith" is not). Other units are not compared, but a
percentage needs the same percentage in the source ("6%" = "6 per cent" = "six percent"): a summary's "a 300-percent
drop" is flagged when the source's 300 counts jobs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from lmdemo.jobs.base import split_sentences

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
           "trillion": 10**12}
_SHORT_SCALES = {"k": 1_000, "m": 1_000_000, "mn": 1_000_000, "bn": 1_000_000_000, "b": 1_000_000_000}
_BASIC = (r"(?:(?:%s)(?:[\s-](?:%s))?|%s)" % ("|".join(_TENS), "|".join(list(_UNITS)[1:10]),
                                             "|".join(sorted(_UNITS, key=len, reverse=True))))
# "one" alone is mostly a pronoun ("one of the stores"), and "hundred" or "a dozen" alone are loose: they count
# only inside a longer written number ("one hundred", "twenty-one").
_LOOSE_WORDS = {"one", "hundred", "thousand", "million", "billion", "trillion", "dozen", "zero"}
_PERCENT = r"[\s-]?%|[\s-]?per[\s-]?cent\b|[\s-]?percent\b"  # "6%", "6 per cent", "a 300-percent drop"
# Short scales ("5m", "2bn", "10k") only after a currency sign: "200m" alone is more often metres.
_NUMBER = re.compile(
    r"(?P<cur>[$£€¥])?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?:[\s-]?(?P<scale>hundred|thousand|million|billion|trillion)\b|(?<=\d)(?P<short>bn|mn|m|k)\b)?"
    rf"(?P<pct>{_PERCENT})?"
    rf"|\b(?P<words>(?:{_BASIC}|dozen|hundred|thousand|million|billion|trillion)"
    rf"(?:[\s-]+(?:dozen|hundred|thousand|million|billion|trillion))*)\b(?P<wpct>{_PERCENT})?",
    re.IGNORECASE)
# Capitalised words (Okafor, O'Neill, McDonald's, NHS, Wi-Fi), joined by the particles names carry inside.
_CAP = r"[A-Z][\w'’&.-]*\w|[A-Z]"
_NAME = re.compile(rf"(?:{_CAP})(?:\s+(?:(?:of|de|du|da|del|van|von|la|le|al|bin)\s+)?(?:{_CAP}))*")
# Capitalised words that start a sentence or clause without being names (and unit names a summary may add to a
# figure: "18 degrees Celsius"); stripped from a name's front.
_FUNCTION_WORDS = set("""a an the this that these those it its it's they their there here he she his her we our
you your i in on at by for from to of with after before during since until while when where if as but and or so
yet also however meanwhile despite although though because about around over under more most some many all
each every both no not one only just what which who how why then now later earlier today yesterday tomorrow
according mr mrs ms dr celsius fahrenheit""".split())


@dataclass(frozen=True)
class Fact:
    text: str  # as written in the summary
    kind: str  # "number" or "name"


def _value(m: re.Match) -> float | None:
    if m.group("num"):
        value = float(m.group("num").replace(",", ""))
        if m.group("scale"):
            return value * _SCALES[m.group("scale").lower()]
        if m.group("short") and m.group("cur"):
            return value * _SHORT_SCALES[m.group("short").lower()]
        return value
    return _words_value(m.group("words"))


def _words_value(words: str) -> float | None:
    """The value of "forty-five", "two hundred", "three million"; None for a lone loose word."""
    parts = [w for w in re.split(r"[\s-]+", words.lower()) if w]
    if len(parts) == 1 and parts[0] in _LOOSE_WORDS:
        return None
    total = current = 0
    for w in parts:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "dozen":
            current = (current or 1) * 12
        elif w == "hundred":
            current = (current or 1) * 100
        else:
            total += (current or 1) * _SCALES[w]
            current = 0
    return float(total + current)


def _figures(text: str) -> Iterator[tuple[re.Match, float]]:
    """(match, value) for each number in ``text`` (a lone loose word such as "one" has no value and is skipped)."""
    for m in _NUMBER.finditer(text):
        value = _value(m)
        if value is not None:
            yield m, value


def numbers(text: str) -> list[tuple[str, float]]:
    """(as written, value) for each number in ``text``: digits, money, percentages, written numbers."""
    return [(m.group(0).strip(), value) for m, value in _figures(text)]


def _is_percent(m: re.Match) -> bool:
    return bool(m.group("pct") or m.group("wpct"))


def _source_values(source: str) -> tuple[set[float], set[float]]:
    """(every value the source states, the values it states as percentages)."""
    values, percents = set(), set()
    for m, value in _figures(source):
        values.add(round(value, 6))
        if _is_percent(m):
            percents.add(round(value, 6))
        if m.group("num"):  # "12 million" in the source also supports a bare "12"
            values.add(round(float(m.group("num").replace(",", "")), 6))
    return values, percents


def names(text: str) -> list[str]:
    """Capitalised names in ``text``; a sentence's single capitalised first word is not taken for one."""
    out = []
    for sentence in split_sentences(text):
        sentence = re.sub(r"^[\W_]+", "", sentence)  # opening quotes or brackets
        for m in _NAME.finditer(sentence):
            words = m.group(0).split()
            start = m.start()
            while words and words[0].lower().strip("'’") in _FUNCTION_WORDS:
                start += len(words[0]) + 1
                words = words[1:]
            if not words or (start == 0 and len(words) == 1):
                continue
            name = re.sub(r"['’]s$", "", " ".join(words)).rstrip(".'’")
            if name and not _NUMBER.fullmatch(name):
                out.append(name)
    return out


def _word_set(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"\w+", text.replace("’", "'"))}


def unsupported(summary: str, source: str) -> list[Fact]:
    """The numbers and names of ``summary`` that ``source`` does not state, in order, without repeats."""
    (values, percents), words = _source_values(source), _word_set(source)
    found: list[Fact] = []
    for m, value in _figures(summary):
        if round(value, 6) not in (percents if _is_percent(m) else values):
            found.append(Fact(m.group(0).strip(), "number"))
    for name in names(summary):
        if not _word_set(name) <= words:
            found.append(Fact(name, "name"))
    seen, out = set(), []
    for fact in found:
        if fact.text not in seen:
            seen.add(fact.text)
            out.append(fact)
    return out


def trim(summary: str, facts: list[Fact]) -> str:
    """``summary`` without what carries ``facts``: a sentence is cut at the clause boundary (comma, semicolon,
    dash) before its first such fact, or dropped when less than 6 words would be left ("" when none are kept)."""
    kept = []
    for sentence in split_sentences(summary):
        at = [i for i in (sentence.find(f.text) for f in facts) if i >= 0]
        if not at:
            kept.append(sentence)
            continue
        head = sentence[:min(at)]
        cut = max(head.rfind(", "), head.rfind("; "), head.rfind(" — "), head.rfind(" – "), head.rfind(" - "))
        clause = head[:cut].rstrip(" ,;—–-") if cut > 0 else ""
        if len(clause.split()) >= 6:
            kept.append(clause + ".")
    return " ".join(kept)

