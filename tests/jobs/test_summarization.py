import re
from pathlib import Path

import pytest

from lmdemo.errors import InputError
from lmdemo.jobs import summarization
from lmdemo.jobs.base import defaults
from lmdemo.jobs.summarization import CHUNK_TOKENS, SummaryRequest, SummaryResult, fit_length, summarize

NEWS = ("The city council voted on Tuesday to build a new public library in the town centre. The project will cost "
        "12 million euros and is expected to open in 2028. Supporters said the current library is too small and lacks "
        "modern facilities such as computers and study rooms. Opponents argued that the money should be spent on "
        "repairing roads. The mayor said construction would begin next spring and promised that local companies "
        "would be hired.")


def test_one_sentence_summary_is_short_and_on_topic(prepared):
    res = summarize(SummaryRequest(NEWS, length=1))
    assert "library" in res.summary.lower()
    assert res.summary_words < res.input_words and res.summary.count(". ") == 0
    assert res.input_words == len(NEWS.split())


def test_word_limit_is_respected(prepared):
    res = summarize(SummaryRequest(NEWS, length=25, unit="words"))
    assert 0 < res.summary_words <= 26  # 25 words, or a cut ending in an ellipsis


def test_text_longer_than_a_chunk_is_summarised_in_parts(prepared):
    long_text = "\n\n".join([NEWS] * 25)
    res = summarize(SummaryRequest(long_text, length=1))
    assert res.input_tokens > CHUNK_TOKENS and res.chunks >= 2 and res.notes
    assert res.summary and res.summary_words < 80


def test_fit_length():
    req = SummaryRequest("x", length=2)
    assert fit_length("One. Two. Three.", req) == "One. Two."
    words = SummaryRequest("x", length=5, unit="words")
    assert fit_length("A short one. Then a much longer second sentence.", words) == "A short one."
    assert fit_length("A single sentence that runs far too long.", words) == "A single sentence that runs…"


@pytest.mark.parametrize("kwargs, word", [({"length": 0}, "length"), ({"length": 11}, "length"),
                                          ({"unit": "pages"}, "unit"), ({"length": "two"}, "length"),
                                          ({"prompt": "poem"}, "prompt")])
def test_bad_settings(kwargs, word):
    with pytest.raises(InputError, match=word):
        SummaryRequest(NEWS, **kwargs)


def test_empty_text(prepared):
    with pytest.raises(InputError, match="empty"):
        summarize(SummaryRequest(" \n "))


# A paragraph dense with figures and names (not one of the bundled eval rows).
FIGURES = ("Northgate Water said on Monday that it will replace 1,200 kilometres of old pipes over the next eight "
           "years at a cost of 2.4 billion pounds. The company lost about 18 percent of its treated water to leaks "
           "last year, one of the worst rates in the country. Chief executive Priya Raman said bills would rise by "
           "4 percent in April to help pay for the work, and that 350 new engineers would be hired. The regulator, "
           "Ofwat, has asked the company to halve its leaks by 2032.")


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in re.findall(r"\d[\d,.]*\d|\d", text)}


def test_the_summary_states_only_the_texts_numbers(prepared):
    res = summarize(SummaryRequest(FIGURES))
    assert res.fact_check in ("passed", "regenerated", "trimmed", "lead") and res.unsupported == []
    assert res.summary and _numbers(res.summary) <= _numbers(FIGURES), res.summary


def test_an_invented_figure_is_summarised_again_or_cut(prepared):
    """A first summary with a figure and a name the text lacks (written here, so the check surely has work): the
    job's own check, with SmolLM2 asked again, ends with none of them."""
    from lmdemo.models import families
    from lmdemo.models.loading import load

    req = SummaryRequest(NEWS)
    summariser = summarization._Summariser(load(req.model), families.require(req.model, "summarise"))
    draft = SummaryResult("Mayor Alan Price said the library will cost 99 million euros and open in 2031.", 70, 14, 90)
    res = list(summarization._check_facts(draft, NEWS, NEWS, summariser, req, None))[-1]
    assert res.flagged == ["99 million", "2031", "Mayor Alan Price"]
    assert res.fact_check in ("regenerated", "trimmed", "lead") and res.unsupported == []
    assert "99" not in res.summary and "2031" not in res.summary and "Price" not in res.summary
    assert res.summary and any(n.startswith("Not in the text: 99 million, 2031") for n in res.notes), res.notes


def test_defaults_are_the_bench_pick():
    """The defaults bench/summary_prompts.py chose, as bench/README.md records them."""
    d = defaults(SummaryRequest)
    assert (d["prompt"], d["length"], d["unit"]) == ("shots-3", 1, "sentences")
    readme = (Path(__file__).resolve().parents[2] / "bench" / "README.md").read_text(encoding="utf-8")
    assert "| **shots-3, 1 sentence (default)** |" in readme
