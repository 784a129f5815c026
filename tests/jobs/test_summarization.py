import pytest

from lmdemo.errors import InputError
from lmdemo.jobs.summarization import CHUNK_TOKENS, SummaryRequest, fit_length, summarize

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
                                          ({"unit": "pages"}, "unit"), ({"length": "two"}, "length")])
def test_bad_settings(kwargs, word):
    with pytest.raises(InputError, match=word):
        SummaryRequest(NEWS, **kwargs)


def test_empty_text(prepared):
    with pytest.raises(InputError, match="empty"):
        summarize(SummaryRequest(" \n "))
