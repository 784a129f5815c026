import re
from pathlib import Path

import pytest

from lmdemo.errors import InputError
from lmdemo.jobs import summarization
from lmdemo.jobs.base import defaults
from lmdemo.jobs.summarization import (CHUNK_TOKENS, DEFAULT_ADAPTER, SummaryRequest, SummaryResult,
                                       completion_prompt, fit_length, summarize)
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL

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

    req = SummaryRequest(NEWS, model=DEFAULT_CHAT_MODEL)
    summariser = summarization._Summariser(load(req.model), families.require(req.model, "summarise"))
    draft = SummaryResult("Mayor Alan Price said the library will cost 99 million euros and open in 2031.", 70, 14, 90)
    res = list(summarization._check_facts(draft, NEWS, NEWS, summariser, req, None))[-1]
    assert res.flagged == ["99 million", "2031", "Mayor Alan Price"]
    assert res.fact_check in ("regenerated", "trimmed", "lead") and res.unsupported == []
    assert "99" not in res.summary and "2031" not in res.summary and "Price" not in res.summary
    assert res.summary and any(n.startswith("Not in the text: 99 million, 2031") for n in res.notes), res.notes


def test_defaults_are_the_bench_pick():
    """The defaults bench/summary_prompts.py and bench/summary_lora.py chose, as bench/README.md records them: one
    sentence from the bundled news LoRA on Gemma; other lengths from SmolLM2 with the shots-3 prompt."""
    d = defaults(SummaryRequest)
    assert (d["prompt"], d["length"], d["unit"]) == ("shots-3", 1, "sentences")
    readme = (Path(__file__).resolve().parents[2] / "bench" / "README.md").read_text(encoding="utf-8")
    assert "| **shots-3, 1 sentence (default)** |" in readme
    assert "| **LoRA, completion prompt (the default)** |" in readme
    for model in (None, "", "default"):
        req = SummaryRequest(NEWS, model=model)
        assert (req.model, req.adapter) == (DEFAULT_COMPLETION_MODEL, DEFAULT_ADAPTER)
    assert Path(DEFAULT_ADAPTER, "adapter_model.safetensors").is_file()
    for kwargs in ({"length": 2}, {"length": 30, "unit": "words"}, {"model": DEFAULT_CHAT_MODEL}):
        req = SummaryRequest(NEWS, **kwargs)
        assert (req.model, req.adapter) == (DEFAULT_CHAT_MODEL, None), kwargs


@pytest.mark.slow
def test_the_default_summary_is_the_bundled_adapters_generate(prepared):
    """The default one-sentence summary is what model.generate gives on Gemma with the bundled LoRA (greedy), and the
    LoRA is what makes it: the base model alone answers the same prompt otherwise."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmdemo.models.loading import load
    from lmdemo.models.store import model_dir

    res = summarize(SummaryRequest(FIGURES))
    folder = model_dir(DEFAULT_COMPLETION_MODEL)  # the converted safetensors folder the job loads too
    tok = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=load(DEFAULT_COMPLETION_MODEL).dtype)
    ids = tok(completion_prompt(FIGURES, SummaryRequest(FIGURES)), return_tensors="pt")

    def greedy(model) -> str:
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=61, do_sample=False)
        text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        answer = summarization._answer(text.split("\n\n")[0] if text.strip() else text)
        return fit_length(summarization.drop_repeats(answer), SummaryRequest(FIGURES))

    plain = greedy(base)
    tuned = greedy(PeftModel.from_pretrained(base, DEFAULT_ADAPTER))
    if res.fact_check == "passed":
        assert res.summary == tuned, (res.summary, tuned)
    assert tuned != plain and len(tuned.split()) >= 8, (tuned, plain)
    assert res.unsupported == [] and _numbers(res.summary) <= _numbers(FIGURES)


def test_a_loop_is_cut_before_the_clause_that_repeats():
    """Greedy Gemma looped on FIGURES; the summary ends before the first clause that says 3 words again."""
    from lmdemo.jobs.summarization import drop_repeats

    loop = ("Northgate Water will replace 1,200 kilometres of old pipes at a cost of 2.4 billion pounds, with 350 "
            "new engineers hired, and 350 new engineers hired, and 350 new engineers will be hired.")
    assert drop_repeats(loop) == ("Northgate Water will replace 1,200 kilometres of old pipes at a cost of 2.4 "
                                  "billion pounds, with 350 new engineers hired.")
    fine = "The council will close the bridge for ten weeks, and pedestrians will use the road bridge."
    assert drop_repeats(fine) == fine
    assert drop_repeats("Prices rose, prices rose.") == "Prices rose, prices rose."  # 2 words: not a loop
