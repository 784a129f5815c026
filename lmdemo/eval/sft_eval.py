"""SFT evaluation: perplexity of the reference responses only, each after its prompt in the adapter's trained format.

The generic generation task scores ``prompt\\nresponse`` as one plain text, which is neither what an SFT adapter
was trained on (the chat template, or ``prompt\\n`` + response + EOS) nor what it is asked to produce (the
response). Here every row is tokenised by :func:`lmdemo.train.sft.format_example`, exactly as training tokenised
it, and only the positions training put a loss on (the response, its end-of-turn/EOS token included) are scored:

    perplexity = exp( sum of -log P(response token | prompt, earlier response tokens) / number of response tokens )

over all rows together (token-weighted, like the generation task). The base model is scored in the same format
as the adapter it is compared with, so the two numbers differ by the adapter's weights alone; the side-by-side
outputs (:func:`side_by_side`) are generated in that format too.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

import torch

from lmdemo.config import DEMO_LIMITS, get_settings
from lmdemo.errors import InputError
from lmdemo.eval.evaluation import MAX_EVAL_TOKENS, EvalResult, Stopped
from lmdemo.models.adapters import adapter_dir
from lmdemo.models.loading import load
from lmdemo.train.sft import IGNORE_INDEX, PromptFormat, format_example, prompt_format, prompt_text, trained_format


@torch.no_grad()
def _response_nll(lm, example: dict[str, list[int]]) -> tuple[float, int]:
    """(sum of -log P over the labelled tokens, how many) for one formatted row: one forward pass."""
    ids = torch.tensor([example["input_ids"]], device=lm.device)
    labels = torch.tensor(example["labels"][1:], device=lm.device)  # position i predicts token i + 1
    logits = lm.model(input_ids=ids).logits[0, :-1].float()
    scored = labels != IGNORE_INDEX
    nll = torch.nn.functional.cross_entropy(logits[scored], labels[scored], reduction="sum")
    return float(nll), int(scored.sum())


def response_perplexity(rows: list[dict], model: str, adapter: str | None = None, fmt: PromptFormat | None = None,
                        dataset: str = "", on_progress: Callable[[int, int], None] | None = None,
                        stop: threading.Event | None = None) -> EvalResult:
    """Perplexity of each row's `response` given its `prompt`, formatted as the SFT adapter was trained.

    ``fmt``: chat or completion; None takes the adapter's recorded format, else the tokenizer's own (what
    training picks). The result's rows are those scored, each with its fields plus `prediction` (its own response
    perplexity); a row whose prompt alone fills the token cap is left out, with a note.
    """
    if not rows:
        raise InputError("No rows to score: give at least one {prompt, response} pair.")
    start = time.perf_counter()
    lm = load(model, adapter=adapter)
    fmt = fmt or (trained_format(lm.spec.adapter) if lm.spec.adapter else None) or prompt_format(lm.tokenizer)
    cap = DEMO_LIMITS.max_eval_tokens if get_settings().demo_mode else MAX_EVAL_TOKENS
    cap = min(cap, getattr(lm.model.config, "max_position_embeddings", None) or cap)  # positions past it are noise
    nll, tokens, skipped, cut, scored = 0.0, 0, 0, 0, []
    for i, row in enumerate(rows):
        if stop is not None and stop.is_set():
            raise Stopped(f"Evaluation stopped after {i} of {len(rows)} examples.")
        example = format_example(lm.tokenizer, str(row["prompt"]), str(row["response"]), None, fmt)
        if len(example["input_ids"]) > cap:
            cut += 1
            example = {key: value[:cap] for key, value in example.items()}
        row_nll, row_tokens = _response_nll(lm, example) if len(example["input_ids"]) > 1 else (0.0, 0)
        if row_tokens == 0:  # the prompt alone fills the cap: nothing of the response left to score
            skipped += 1
        else:
            row["prediction"] = math.exp(row_nll / row_tokens)
            scored.append(row)
            nll, tokens = nll + row_nll, tokens + row_tokens
        if on_progress:
            on_progress(i + 1, len(rows))
    if not tokens:
        raise InputError(f"Every prompt is {cap:,}+ tokens in the {fmt} format: no response token is left to score.")
    notes = [f"Perplexity of the {tokens:,} response tokens only, each after its prompt in the {fmt} format "
             "the adapter was trained in."]
    if cut:
        notes.append(f"{cut} of {len(rows)} example(s) were longer than {cap:,} tokens: each was scored on its "
                     f"first {cap:,} tokens only.")
    if skipped:
        notes.append(f"{skipped} example(s) were left out: their prompt alone fills {cap:,} tokens.")
    # Task "generation": a perplexity of reference responses, lower is better, one per row (`prediction`), which
    # is what the paired comparison and the model card read for that task.
    return EvalResult("generation", model, lm.spec.adapter, len(scored), {"perplexity": math.exp(nll / tokens)},
                      round(time.perf_counter() - start, 2), scored, dataset, notes)


def compare_response_perplexity(rows: list[dict], base_model: str, adapter: str,
                                dataset: str = "") -> tuple[EvalResult, EvalResult]:
    """(base, base + adapter) response perplexities, both in the adapter's trained format."""
    fmt = trained_format(adapter_dir(adapter)) or prompt_format(load(base_model).tokenizer)
    base = response_perplexity([dict(r) for r in rows], base_model, fmt=fmt, dataset=dataset)
    tuned = response_perplexity([dict(r) for r in rows], base_model, adapter=adapter, fmt=fmt, dataset=dataset)
    return base, tuned


def side_by_side(rows: list[dict], base_model: str, adapter: str, max_new_tokens: int = 48) -> list[dict]:
    """Greedy outputs of the base model and of base + adapter for each row's prompt, both fed in the adapter's
    trained format (a chat turn through the template, or a completion after `prompt\\n`):
    {"input", "reference", "base", "fine-tuned"} per row."""
    from lmdemo.engine.streaming import GenerationParams
    from lmdemo.jobs.generation import GenerationRequest, generate

    tokenizer = load(base_model).tokenizer
    fmt = trained_format(adapter_dir(adapter)) or prompt_format(tokenizer)
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0)
    shown = []
    for row in rows:
        prompt = row["prompt"] if fmt == "chat" else prompt_text(tokenizer, row["prompt"], fmt)  # chat: templated
        outs = {}
        for label, kw in (("base", {}), ("fine-tuned", {"adapter": adapter})):
            try:
                outs[label] = generate(GenerationRequest(prompt, mode=fmt, model=base_model, params=params, **kw)).text
            except Exception as exc:  # one failed generation shows why instead of failing the whole comparison
                outs[label] = f"({exc})"
        shown.append({"input": row["prompt"], "reference": row["response"], **outs})
    return shown
