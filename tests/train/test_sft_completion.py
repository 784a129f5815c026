"""SFT on a base model (no chat template), end to end on a tiny Llama built here: trained in the completion format,
scored on the response tokens in that format, and generated side by side in completion mode.

The reference numbers are computed with plain transformers + PEFT (a forward pass and the mean NLL of the response
tokens), not with lmdemo's formatting, so a wrong format or a wrong scored span shows up as a mismatch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lmdemo.engine.streaming import GenerationParams
from lmdemo.eval.compare import compare_base_and_adapter
from lmdemo.eval.sft_eval import response_perplexity
from lmdemo.jobs.generation import GenerationRequest, generate
from lmdemo.models.adapters import ADAPTER_META, EVAL_FILES
from lmdemo.train.sft import SFTConfig, train_sft
from tiny_families import SENTENCES, build_tiny_llama

pytestmark = pytest.mark.tiny

ROWS = [{"prompt": SENTENCES[i], "response": SENTENCES[i + 1]} for i in range(0, 24, 2)]


@pytest.fixture(scope="module", autouse=True)
def home(tiny_home):
    return tiny_home


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama whose byte-level BPE tokenizer adds BOS and has NO chat template: a base model."""
    folder = build_tiny_llama(tmp_path_factory.mktemp("tiny-base-llama"), chat=False)
    from transformers import AutoTokenizer

    assert not AutoTokenizer.from_pretrained(folder).chat_template
    return folder


@pytest.fixture(scope="module")
def adapter(base_dir, tmp_path_factory) -> Path:
    """Two steps at a high rate, so that the adapter visibly moves the scores."""
    cfg = SFTConfig(output_dir=str(tmp_path_factory.mktemp("sft") / "tiny-sft"), base_model=str(base_dir),
                    max_steps=2, batch_size=4, max_length=64, learning_rate=2e-2)
    return Path(train_sft(ROWS, ROWS[:2], cfg).output_dir)


def _reference_ppl(base_dir: Path, adapter: Path | None, rows: list[dict]) -> float:
    """exp(mean NLL of the response tokens + EOS) after `prompt\\n` (with BOS), by plain transformers/PEFT."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmdemo.models.loading import resolve_dtype

    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=resolve_dtype("auto", torch.device("cpu")))
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    nll, count = 0.0, 0
    for row in rows:
        prompt = tok(row["prompt"] + "\n")["input_ids"]  # <s> prompt \n
        response = tok(row["response"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        # Position p predicts token p + 1: the response starts at len(prompt).
        for j, token in enumerate(response):
            nll -= float(logp[len(prompt) + j - 1, token])
        count += len(response)
    return math.exp(nll / count)


def test_base_model_trains_in_the_completion_format(adapter):
    meta = json.loads((adapter / ADAPTER_META).read_text())
    assert meta["format"] == "completion" and meta["task"] == "sft"


def test_response_perplexity_is_exp_mean_nll_of_the_response_tokens(base_dir, adapter):
    rows = ROWS[:4]
    tuned = response_perplexity([dict(r) for r in rows], str(base_dir), adapter=str(adapter))
    base = response_perplexity([dict(r) for r in rows], str(base_dir), fmt="completion")
    assert tuned.metrics["perplexity"] == pytest.approx(_reference_ppl(base_dir, adapter, rows), rel=1e-4)
    assert base.metrics["perplexity"] == pytest.approx(_reference_ppl(base_dir, None, rows), rel=1e-4)
    assert tuned.metrics["perplexity"] != pytest.approx(base.metrics["perplexity"], rel=1e-3)
    one = _reference_ppl(base_dir, adapter, rows[:1])
    assert tuned.predictions[0]["prediction"] == pytest.approx(one, rel=1e-4)  # each row's own score
    assert tuned.n == 4 and "completion" in tuned.notes[0]


def test_chat_format_is_refused_for_a_tokenizer_without_template(base_dir):
    from lmdemo.errors import InputError

    with pytest.raises(InputError, match="chat template"):
        response_perplexity([dict(ROWS[0])], str(base_dir), fmt="chat")


def test_comparison_scores_and_generates_in_the_completion_format(base_dir, adapter):
    rows = ROWS[:3]
    out = compare_base_and_adapter("sft", rows, str(base_dir), str(adapter), examples=2)
    assert set(out["metrics"]["base"]) == set(out["metrics"]["fine-tuned"]) == {"perplexity"}
    assert out["metrics"]["fine-tuned"]["perplexity"] == pytest.approx(_reference_ppl(base_dir, adapter, rows),
                                                                       rel=1e-4)
    assert out["metrics"]["base"]["perplexity"] == pytest.approx(_reference_ppl(base_dir, None, rows), rel=1e-4)
    saved = json.loads((adapter / EVAL_FILES["adapter"]).read_text())  # what a push puts on the model card
    assert saved["metrics"] == out["metrics"]["fine-tuned"]
    assert len(out["examples"]) == 2
    params = GenerationParams(max_new_tokens=48, temperature=0)
    for example, row in zip(out["examples"], rows):
        assert not any("chat template" in str(v) for v in example.values()), example
        # Both columns are greedy completions after `prompt\n`, as the adapter was trained.
        req = GenerationRequest(row["prompt"] + "\n", mode="completion", model=str(base_dir), params=params)
        assert example["base"] == generate(req).text
        req = GenerationRequest(row["prompt"] + "\n", mode="completion", model=str(base_dir), adapter=str(adapter),
                                params=params)
        assert example["fine-tuned"] == generate(req).text


def test_lab_scores_an_adapter_given_alone_on_its_own_base(base_dir, adapter):
    """The LM lab with only an adapter: loaded on the base it was trained on (not the lab's default model)."""
    from lmdemo.jobs import lmlab

    text = "The cat sat on the warm mat."
    req = lmlab.PerplexityRequest(text, adapter=str(adapter))
    assert req.model == str(base_dir)
    tuned, base = lmlab.perplexity(req), lmlab.perplexity(lmlab.PerplexityRequest(text, model=str(base_dir)))
    assert tuned.adapter == adapter.name and tuned.perplexity != pytest.approx(base.perplexity, rel=1e-4)
    top = lmlab.next_tokens(lmlab.NextTokensRequest("The cat", k=3, adapter=str(adapter)))
    assert top.model == str(base_dir) and len(top.tokens) == 3


def test_text_jobs_load_an_adapter_given_alone_on_its_own_base(base_dir, adapter):
    """Generate, Summarise and Translate with only an adapter: its base, not the job's default model."""
    from lmdemo.jobs.generation import GenerationRequest, generate
    from lmdemo.jobs.summarization import SummaryRequest
    from lmdemo.jobs.translation import TranslationRequest

    for req in (GenerationRequest("Hi", mode="completion", adapter=str(adapter)),
                SummaryRequest("A long text. It has two sentences.", adapter=str(adapter)),
                TranslationRequest("Hello.", "en", "fr", adapter=str(adapter))):
        assert (req.model, req.adapter) == (str(base_dir), str(adapter)), type(req).__name__
    req = GenerationRequest("The cat", mode="completion", adapter=str(adapter),
                            params=GenerationParams(max_new_tokens=4, temperature=0))
    assert generate(req).text == generate(GenerationRequest(
        "The cat", mode="completion", model=str(base_dir), adapter=str(adapter), params=req.params)).text
