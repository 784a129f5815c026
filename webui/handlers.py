"""Thin callbacks: UI values -> library request -> library call -> UI values. No model logic lives here.

The page's handlers and the named API endpoints (webui.app.api_endpoints) build the same library requests;
both show a library error as a one-line gr.Error (:func:`friendly`).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from lmdemo.config import ConfigError, get_settings
from lmdemo.engine.streaming import GenerationParams
from lmdemo.errors import InputError, LmdemoError
from lmdemo.eval.evaluation import EvalRequest, compare_models
from lmdemo.jobs.base import as_dict, defaults
from lmdemo.jobs.generation import GenerationRequest, generate_stream
from lmdemo.jobs.lmlab import (BigramRequest, NextTokensRequest, PerplexityRequest, bigram, next_tokens,
                               perplexity)
from lmdemo.jobs.sentiment import SentimentRequest, read_texts, run as run_sentiment, to_csv
from lmdemo.jobs.summarization import SummaryRequest, summarize_stream
from lmdemo.jobs.translation import TranslationRequest, translate_stream
from lmdemo.models import store
from lmdemo.models.registry import BUILTINS
from lmdemo.serve import slots, visitors
from lmdemo.train.plan import FinetuneRequest, plan, task_defaults

from .i18n import LINES, error_message, good_for, lang_of, message, notes, say, say_zh, text, word

log = logging.getLogger("lmdemo.webui")
BUNDLED_SENTIMENT = "sentiment (bundled MiniLM + LoRA)"  # the Sentiment tab's label for "the job's default"

# What every face shows before the user types: the library requests' own defaults.
GEN = defaults(GenerationParams)
GEN_REQ = defaults(GenerationRequest)
SUM = defaults(SummaryRequest)
TR = defaults(TranslationRequest)
NEXT = defaults(NextTokensRequest)
BIGRAM = defaults(BigramRequest)
EVAL = defaults(EvalRequest)
FT = defaults(FinetuneRequest)


def friendly(fn: Callable) -> Callable:
    """Turn library errors into a gr.Error in the visitor's language; never show a traceback."""

    def convert(exc: Exception, request: gr.Request | None) -> gr.Error:
        lang = lang_of(request)
        # print_exception=False: a user's mistake is not a server fault, and the unexpected case is logged here once
        if isinstance(exc, (LmdemoError, ConfigError)):
            return gr.Error(error_message(exc, lang), print_exception=False)
        log.exception("unexpected error in %s", fn.__name__)
        return gr.Error(error_message(RuntimeError(f"{type(exc).__name__}: {exc}"), lang), print_exception=False)

    def request_of(args, kwargs) -> gr.Request | None:
        return next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)

    if _is_generator(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - everything becomes a readable message
                raise convert(exc, request_of(args, kwargs)) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001
            raise convert(exc, request_of(args, kwargs)) from None
    return wrapper


def in_slot(fn: Callable) -> Callable:
    """Hold the model slot the OpenAI API shares while ``fn`` runs (gradio's queue already runs one such job at
    a time; the slot makes an API call wait for it, and it for an API call)."""
    if _is_generator(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            with slots.CAUSAL_LM.hold(bounded=False):
                yield from fn(*args, **kwargs)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with slots.CAUSAL_LM.hold(bounded=False):
            return fn(*args, **kwargs)
    return wrapper


def _is_generator(fn: Callable) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def need(value: str | None, request: gr.Request | None) -> str:
    """The text, or the visitor's-language "type some text first" error."""
    if value is None or not str(value).strip():
        raise gr.Error(text("err_empty", lang_of(request)), print_exception=False)
    return str(value)


# ---------------------------------------------------------------- owners
# Who owns what on a shared Space: lmdemo.serve.visitors (the OpenAI API applies the same rules).

def owner_of(request: gr.Request | None) -> str | None:
    """The caller's owner id (a hash: it names folders and is never shown), or None outside demo mode."""
    if not get_settings().demo_mode:
        return None
    user = getattr(request, "username", None) if request is not None else None
    session = getattr(request, "session_hash", None) if request is not None else None
    return visitors.owner(user, visitors.visitor_id(_cookies(request)), session)


def _cookies(request: gr.Request | None) -> dict:
    try:
        return dict(request.cookies) if request is not None else {}
    except (AttributeError, KeyError, TypeError):  # a request built without an HTTP request (tests, scripts)
        return {}


_named = visitors.named


def pick(value: str | None, request: gr.Request | None) -> tuple[str | None, str | None]:
    """(model, adapter folder) for a model box or API ``model``: the caller's own adapters by name, the shared
    ones, built-ins and Hub ids."""
    from lmdemo.models.adapters import resolve_pick

    return resolve_pick(_named(value), owner_of(request))


def visitor_model(value: str | None) -> str | None:
    """A model-only box (a fine-tuning base): the path rule of :func:`pick`, no adapter lookup."""
    return _named(value, "model names") or None


SCRATCH_TTL_S = 3600  # result files (CSV, JSON, dry-run folders) outlive the page's download by this much


def scratch(prefix: str) -> Path:
    """A fresh folder for a result file (in the system temp folder, where gradio serves files from); folders
    older than SCRATCH_TTL_S are removed."""
    root = Path(tempfile.gettempdir()) / "lmdemo-scratch"
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - SCRATCH_TTL_S
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def picker_choices(task: str | tuple[str, ...], defaults: list[str], request: gr.Request | None = None) -> list[str]:
    """Built-in choices plus the caller's and the shared adapters of the kinds a tab runs (classification for
    sentiment; sft, and translation or summarisation adapters of seq2seq models, for the text tabs), and the
    named remote engines where the tab runs on them."""
    from lmdemo.models.adapters import list_adapters

    kinds = (task,) if isinstance(task, str) else task
    # "engines": the tab also runs on the operator's named remote engines (generate, summarise, translate).
    engines = list(get_settings().backends) if "engines" in kinds else []
    return defaults + engines + [a.name for kind in kinds if kind != "engines"
                                 for a in list_adapters(kind, owner=owner_of(request))]


def _show_notes(notes: list[str], lang: str = "en") -> None:
    for note in notes:
        gr.Warning(message(note, lang))


def api_data(value: str | None) -> str | None:
    """An API call's data argument. On a shared Space (demo mode) the server's files are not a caller's to read."""
    from lmdemo.models.registry import hub_shaped

    value = (value or "").strip()
    if value and get_settings().demo_mode and (Path(value).expanduser().exists() or not hub_shaped(value)):
        raise InputError("In demo mode the API reads the bundled sets and samples or a Hub dataset id, "
                         "not files on the server: leave `data` empty or use the page's upload.")
    return value or None


# ---------------------------------------------------------------- generation

def message_text(content: Any) -> str:
    """Plain text of a Chatbot message's content (a string, or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(message_text(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    return str(content or "")


def add_user_message(message: str, history: list[dict] | None):
    """Move the typed message into the conversation (no model work; runs outside the queue)."""
    history = list(history or [])
    if message and message.strip():
        history.append({"role": "user", "content": message})
    return "", history


@friendly
def chat_reply(history: list[dict], mode: str, model: str, quantize: str, max_new_tokens: float,
               temperature: float, top_p: float, top_k: float, repetition_penalty: float, seed: float,
               stop: threading.Event | None, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    """Stream the assistant's reply to the last user message."""
    history = [{"role": m["role"], "content": message_text(m["content"])} for m in (history or [])]
    if not history or history[-1]["role"] != "user":
        raise gr.Error(text("err_empty", lang_of(request)), print_exception=False)
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                              repetition_penalty=repetition_penalty, seed=seed)
    model, adapter = pick(model, request)
    req = GenerationRequest(history[-1]["content"], mode=mode, model=model, adapter=adapter, quantize=quantize,
                            params=params, history=history[:-1] if mode == "chat" else [])
    if stop is not None:
        stop.clear()
    history.append({"role": "assistant", "content": ""})
    stats_line, finish, lang = "", "", lang_of(request)
    for res in generate_stream(req, stop=stop):
        history[-1]["content"] = res.text
        stats = res.stats
        stats_line = say("chat_stats", lang, tokens=stats.tokens, tps=stats.tokens_per_second,
                         first=stats.first_token_seconds or 0, backend=stats.backend)
        finish = stats.finish_reason
        yield history, stats_line
    yield history, f"{stats_line} · {word(finish, lang)}"


def stop_generation(stop: threading.Event | None) -> None:
    if stop is not None:
        stop.set()


class StopEvent(threading.Event):
    """A stop flag for gr.State: gradio deep-copies a State's value per session, and this copy is a fresh event.

    A plain callable default would also work, but gradio publishes it as a public API endpoint.
    """

    def __deepcopy__(self, memo) -> "StopEvent":
        return StopEvent()


# ---------------------------------------------------------------- sentiment

def sentiment_model(model: str | None, request: gr.Request | None = None) -> dict[str, str | None]:
    """The Sentiment picker's value as a request's model and adapter: the bundled classifier's label means the
    default."""
    if model == BUNDLED_SENTIMENT or not str(model or "").strip():
        return {"model": None}
    model, adapter = pick(model, request)
    return {"model": model, "adapter": adapter}


@friendly
def sentiment_one(text_in: str, model: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    batch = run_sentiment(SentimentRequest([need(text_in, request)], **sentiment_model(model, request)))
    return batch.results[0].scores


@friendly
def sentiment_batch(lines: str, upload: str | None, model: str, request: gr.Request = None,
                    progress=gr.Progress(track_tqdm=True)):
    texts = read_texts(upload) if upload else [l for l in (lines or "").splitlines() if l.strip()]
    if not texts:
        raise gr.Error(text("err_empty", lang_of(request)), print_exception=False)
    results = run_sentiment(SentimentRequest(texts, **sentiment_model(model, request))).results
    out = scratch("sentiment-") / "sentiment.csv"
    to_csv(results, out)
    rows = [[r.text, r.label, round(r.score, 4)] for r in results]
    lang = lang_of(request)
    return (gr.Dataframe(value=rows, headers=[word(h, lang) for h in ("text", "label", "score")]),
            gr.DownloadButton(value=str(out), visible=True))


# ---------------------------------------------------------------- summarisation

@friendly
def summarise(text_in: str, unit: str, length: float, model: str, stop: threading.Event | None,
              request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    model, adapter = pick(model, request)
    req = SummaryRequest(need(text_in, request), length=length, unit=unit, model=model, adapter=adapter)
    if stop is not None:
        stop.clear()
    shown, lang = 0, lang_of(request)
    for res in summarize_stream(req, stop=stop):
        _show_notes(res.notes[shown:], lang)
        shown = len(res.notes)
        yield res.summary, _lengths(res, lang)


def _lengths(res, lang: str = "en") -> str:
    return (say("lengths", lang, words=res.input_words, tokens=res.input_tokens, out=res.summary_words)
            + (say("parts", lang, n=res.chunks) if res.chunks > 1 else "") + _speed(res, lang) + _fact_line(res, lang))


def _fact_line(res, lang: str = "en") -> str:
    """What the summary's fact check did (lmdemo.jobs.summarization), as the tab says it; nothing when unchecked."""
    key = f"fact_{getattr(res, 'fact_check', '')}"
    if key not in LINES:
        return ""
    line = say(key, lang, flagged=", ".join(f"“{plain(f)}”" for f in res.flagged))
    if res.unsupported:
        line += say("still_unsupported", lang, items=", ".join(f"“{plain(f)}”" for f in res.unsupported))
    return f"  \n{line}"


def _speed(res, lang: str = "en") -> str:
    """Tokens, tok/s and the back-end (a remote engine's name) of a streamed job's result."""
    return say("speed", lang, tokens=res.tokens, tps=res.tokens_per_second, backend=res.backend) if res.backend else ""


# ---------------------------------------------------------------- translation

@friendly
def translate(text_in: str, source: str, target: str, model: str, stop: threading.Event | None,
              request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    model, adapter = pick(model, request)
    req = TranslationRequest(need(text_in, request), source, target, model=model, adapter=adapter)
    if stop is not None:
        stop.clear()
    shown, lang = 0, lang_of(request)
    for res in translate_stream(req, stop=stop):
        _show_notes(res.notes[shown:], lang)
        shown = len(res.notes)
        yield res.translation, say("sentences", lang, n=res.sentences, s="" if res.sentences == 1 else "s") + _speed(
            res, lang)


def swap_languages(source: str, target: str, text_in: str, translated: str):
    return target, source, translated or text_in, text_in if translated else ""


# ---------------------------------------------------------------- LM lab

@friendly
def lab_score(text_in: str, model: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    model, adapter = pick(model, request)
    res = perplexity(PerplexityRequest(need(text_in, request), model=model, adapter=adapter))
    lang = lang_of(request)
    strip = [(t.token, round(t.prob, 3)) for t in res.tokens]
    table = [[t.token, round(t.logprob, 3), round(t.prob, 4)] for t in res.tokens]
    summary = say("lab_totals", lang, n=len(res.tokens), total=res.total_logprob, neg=-res.total_logprob,
                  ppl=res.perplexity)
    if res.note:
        summary += f"\n\n_{notes(res.note, lang)}_"
    return strip, summary, gr.Dataframe(value=table, headers=[word(h, lang) for h in ("token", "log p", "p")])


@friendly
def lab_next(prefix: str, k: float, model: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    import pandas as pd

    model, adapter = pick(model, request)
    res = next_tokens(NextTokensRequest(need(prefix, request), k=k, model=model, adapter=adapter))
    lang = lang_of(request)
    # Quote tokens so leading spaces stay visible and equal-looking pieces stay apart on the axis.
    frame = pd.DataFrame({"token": [repr(t) for t, _ in res.tokens], "probability": [p for _, p in res.tokens]})
    return gr.BarPlot(value=frame, x_title=word("token", lang), y_title=word("probability", lang))


@friendly
def lab_bigram(text_in: str, corpus: str, k: float, model: str, request: gr.Request = None,
               progress=gr.Progress(track_tqdm=True)):
    model, adapter = pick(model, request)
    req = BigramRequest(need(text_in, request), need(corpus, request), k=k, model=model, adapter=adapter)
    res = bigram(req)
    return say("bigram_table", lang_of(request), model=res.model, lm_tokens=res.lm_tokens, lm_ppl=res.lm_perplexity,
               k=f"{float(req.k):g}", bi_tokens=res.bigram_tokens, bi_ppl=res.bigram_perplexity)


# ---------------------------------------------------------------- models

def models_list() -> list[dict[str, Any]]:
    """Each built-in with its state on this machine (ready, fetched or missing)."""
    out = []
    for name, m in BUILTINS.items():
        st = store.status(name)
        out.append({"name": name, "state": st.state, "size_bytes": st.size_bytes, "params": m.params,
                    "good_for": m.good_for, "licence": m.licence, "hub_id": m.hub_id,
                    "packages": [p.requirement for p in m.source.packages]})
    return out


MODEL_HEADERS = ["name", "status", "size", "params", "good for", "licence", "PyPI"]


def models_table(request: gr.Request = None):
    lang = lang_of(request)
    rows = [[m["name"], word(m["state"], lang), f"{m['size_bytes'] / 2**20:.0f} MB" if m["size_bytes"] else "-",
             m["params"], good_for(m["name"], m["good_for"], lang),
             m["licence"], m["packages"][0] + (" " + word("(+parts)", lang) if len(m["packages"]) > 1 else "")]
            for m in models_list()]
    return gr.Dataframe(value=rows, headers=[word(h, lang) for h in MODEL_HEADERS])


@friendly
def prepare_models(request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    store.prepare()
    return models_table(request)


# ---------------------------------------------------------------- evaluation

def compare_for(req: EvalRequest, request: gr.Request | None, stop: threading.Event | None = None):
    """compare_models with the caller's adapters by name (paths refused on a shared Space)."""
    for label in req.models:
        _named(label)  # the path rule, before any row is scored; compare_models resolves each name once
    return compare_models(req, stop=stop, owner=owner_of(request))


@friendly
def run_evaluation(task: str, upload: str | None, models: str, limit: float, stop: threading.Event | None = None,
                   source: str | None = None, target: str | None = None, request: gr.Request = None,
                   progress=gr.Progress(track_tqdm=True)):
    """Score each model on the chosen set; returns metrics table, chart data, per-example table, JSON file."""
    import pandas as pd

    if stop is not None:
        stop.clear()
    cmp = compare_for(EvalRequest(task, upload or None, models=models, limit=limit, source=source, target=target),
                      request, stop)
    lang = lang_of(request)
    _show_notes(sorted({note for _, res in cmp.results for note in res.notes}), lang)
    headers, rows = cmp.metrics_rows()
    # One bar per (metric, model), coloured by model: a plain colour split would stack the metrics.
    chart = pd.DataFrame([{"bar": f"{word(name, lang)} · {label}", "model": label, "value": value}
                          for label, res in cmp.results for name, value in res.metrics.items()])
    out = scratch("eval-") / "eval-results.json"
    out.write_text(json.dumps(cmp.to_dict()["results"], indent=2, ensure_ascii=False))
    examples = pd.DataFrame(cmp.examples())
    return (gr.Dataframe(value=rows, headers=[word(h, lang) for h in headers]),
            gr.BarPlot(value=chart, x_title=word("bar", lang), y_title=word("value", lang),
                       color_title=word("model", lang)),
            examples.rename(columns=lambda c: word(c, lang)), gr.DownloadButton(value=str(out), visible=True),
            eval_paired_text(cmp.paired(), lang))


def eval_paired_text(paired: dict | None, lang: str) -> str:
    """Two models compared: the second against the first, example by example."""
    if not paired:
        return ""
    return plain(paired_text(paired, lang, (paired["second"], paired["first"]), "example", 3))


# ---------------------------------------------------------------- fine-tuning

def adapter_name(name: str | None) -> str:
    """A web visitor names an adapter; only the CLI may write one to a path of its choice."""
    from lmdemo.models.adapters import safe_name

    return safe_name(name) if str(name or "").strip() else ""


def _columns(task: str, first_col: str | None, second_col: str | None) -> dict[str, str]:
    """The column pickers as a request's mapping (file column -> field)."""
    from lmdemo.data import tabular
    from lmdemo.train.plan import task_name

    fields = tabular.COLUMNS[task_name(task)]
    return {col: f for col, f in zip((first_col, second_col), fields) if col}


def finetune_request(task: str, sample: str | None, upload: str | None, first_col: str | None = None,
                     second_col: str | None = None, **settings) -> FinetuneRequest:
    """The Fine-tune tab's values as the library's request (an upload wins over the sample)."""
    if "output" in settings:
        settings["output"] = adapter_name(settings["output"])
    if "base" in settings:
        settings["base"] = visitor_model(settings["base"])
    return FinetuneRequest(task=task, data=upload or None, sample=None if upload else sample or None,
                           columns=_columns(task, first_col, second_col), **settings)


def _preview_source(sample: str | None, upload: str | None) -> str:
    from lmdemo.data import tabular

    if upload:
        return upload
    if sample:
        return str(tabular.sample_path(sample)[1])
    raise InputError("Upload a CSV/JSONL/Parquet file or pick a sample set.")


def plan_summary_text(summary: dict, lang: str = "en") -> str:
    return (say("plan_rows", lang, train=summary["train_rows"], val=summary["validation_rows"])
            + (say("plan_labels", lang, labels=", ".join(summary["labels"])) if summary["labels"] else "")
            + "".join(f"\n\n_{message(n, lang)}_" for n in summary["notes"]))


@friendly
def check_training_data(task: str, sample: str | None, upload: str | None, first_col: str | None,
                        second_col: str | None, request: gr.Request = None):
    """Read and validate the data; preview rows, column choices and what will be trained on."""
    from lmdemo.data import tabular

    rows, columns = tabular.read_rows(_preview_source(sample, upload))
    fields = tabular.COLUMNS.get(task, tabular.COLUMNS["sft"])
    first = first_col if first_col in columns else (fields[0] if fields[0] in columns else None)
    second = second_col if second_col in columns else (fields[1] if fields[1] in columns else None)
    preview = gr.Dataframe(value=[[str(r.get(c, ""))[:120] for c in columns] for r in rows[:5]], headers=columns)
    choices = (gr.Dropdown(choices=columns, value=first), gr.Dropdown(choices=columns, value=second))
    try:
        planned = plan(finetune_request(task, sample, upload, first, second), settle=False)
    except InputError as exc:
        said = message(str(exc), lang_of(request))
        gr.Warning(said)
        return preview, f"⚠️ {said}", *choices
    return preview, plan_summary_text(planned.summary(), lang_of(request)), *choices


_ESTIMATES: OrderedDict[str | None, tuple[tuple, dict]] = OrderedDict()  # owner -> (plan key, estimate), bounded
MAX_ESTIMATES_KEPT = 256


def _plan_key(planned) -> tuple:
    """What an estimate depends on: a run started with the same key is shown beside the estimate made for it."""
    config = planned.config
    return (planned.task, config["base_model"], config.get("quantize"), config.get("lora_r"), config.get("epochs"),
            config.get("max_steps"), len(planned.data.train))


MAX_UI_STEPS = 10_000  # the Max steps box's bound; 0 there means "by epochs"


def _steps(max_steps: float | None) -> int | None:
    if not max_steps:
        return None
    if not 1 <= max_steps <= MAX_UI_STEPS or max_steps != int(max_steps):
        raise InputError(f"Max steps must be a whole number from 0 (by epochs) to {MAX_UI_STEPS}, not {max_steps}.")
    return int(max_steps)


@friendly
def estimate_training(task: str, sample: str | None, upload: str | None, first_col: str | None,
                      second_col: str | None, base: str, quantize: str, lora_r: float, source: str = "en",
                      target: str = "fr", epochs: float | None = None, max_steps: float | None = 0,
                      request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    from lmdemo.train.plan import estimate_plan

    req = finetune_request(task, sample, upload, first_col, second_col, base=base, quantize=quantize,
                           lora_r=int(lora_r), source=source, target=target,
                           epochs=float(epochs) if epochs else None, max_steps=_steps(max_steps))
    planned = plan(req)
    est = estimate_plan(planned)
    owner = owner_of(request)
    _ESTIMATES.pop(owner, None)
    _ESTIMATES[owner] = (_plan_key(planned), est.to_dict())
    while len(_ESTIMATES) > MAX_ESTIMATES_KEPT:
        _ESTIMATES.popitem(last=False)
    return estimate_text(est, lang_of(request))


def estimate_text(est, lang: str) -> str:
    if lang != "zh":
        return est.text()
    run = say_zh("estimate_run", steps=est.total_steps, seconds=est.total_seconds) if est.total_steps else ""
    return say_zh("estimate", per_epoch=est.seconds_per_epoch / 60, steps=est.steps_per_epoch,
               per_step=est.seconds_per_step, run=run, mb=est.peak_memory_mb, trainable=est.trainable_params,
               total=est.total_params)


def task_settings(task: str):
    """base, epochs, learning rate and LoRA rank of a task: what the task radio's change puts in the boxes; the
    language pair shows for translation only; the task's first bundled sample is picked (none for seq2seq)."""
    from lmdemo.data.tabular import SAMPLES

    d = task_defaults(task)
    sample = next((name for name, (kind, *_) in SAMPLES.items() if kind == task), None)
    return (d["base"], d["epochs"], d["learning_rate"], d["lora_r"], gr.Row(visible=task == "translation"),
            gr.update(value=sample) if sample else gr.skip())


def gpu_count() -> int:
    """GPUs here: the Fine-tune tab offers one training process per GPU from two."""
    from lmdemo.train.distributed import gpu_count as count

    return count()


def start_job(req: FinetuneRequest, request: gr.Request | None = None, processes: int = 1):
    """Plan the run and hand it to the app's training slot: (plan, job status). A visitor's adapter is saved
    among their own, within their quota."""
    from dataclasses import replace

    from lmdemo.config import DEMO_LIMITS
    from lmdemo.models.adapters import count_owned, new_adapter_path
    from lmdemo.train.worker import JOBS

    owner = owner_of(request)
    if owner is not None:
        folder = new_adapter_path(req.output or f"{req.task}-adapter", owner=owner)
        if not folder.exists() and count_owned(owner) >= DEMO_LIMITS.max_adapters:
            raise InputError(f"You keep {DEMO_LIMITS.max_adapters} adapters at most here: remove one first "
                             "(Adapters section) or reuse a name to replace it.")
        req = replace(req, output=str(folder))
    if processes > 1:
        from lmdemo.train.distributed import check_processes

        check_processes(processes)
    planned = plan(req)
    key, estimate = _ESTIMATES.get(owner, (None, None))
    status = JOBS.start(planned.name, planned.task, planned.data.train, planned.data.validation, planned.config,
                        owner=owner, processes=processes, estimate=estimate if key == _plan_key(planned) else None)
    return planned, status


@friendly
def start_training(task: str, sample: str | None, upload: str | None, first_col: str | None, second_col: str | None,
                   base: str, epochs: float, lr: float, lora_r: float, quantize: str, name: str,
                   source: str = "en", target: str = "fr", processes: float = 1, max_steps: float | None = 0,
                   request: gr.Request = None):
    req = finetune_request(task, sample, upload, first_col, second_col, output=name,
                           base=base, epochs=float(epochs), learning_rate=float(lr), lora_r=int(lora_r),
                           quantize=quantize, source=source, target=target, max_steps=_steps(max_steps))
    planned, status = start_job(req, request, processes=int(processes or 1))
    lang = lang_of(request)
    _show_notes(status.notes, lang)
    gr.Info(say("training_started", lang, name=planned.name, rows=len(planned.data.train),
                val=len(planned.data.validation)))


@friendly
def cancel_training(request: gr.Request = None):
    from lmdemo.train.worker import JOBS

    JOBS.cancel(owner_of(request))


def job_dict(st, busy: bool = False) -> dict[str, Any]:
    """A training JobStatus as plain values (the API's /finetune_status); ``busy``: another's run holds the slot."""
    return {"state": st.state, "name": st.name, "task": st.task, "step": st.step, "max_steps": st.max_steps,
            "message": st.message, "output_dir": "" if get_settings().demo_mode else st.output_dir,
            "notes": list(st.notes), "losses": as_dict(st.losses), "comparison": as_dict(st.comparison),
            "slot_busy": busy}


def plain(value: Any) -> str:
    """Text shown as Markdown, with every Markdown and HTML character escaped (names and errors may be typed)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>&~])", r"\\\1", str(value))


def training_status(request: gr.Request = None):
    """Progress line, loss plot data, comparison tables of the caller's own run: polled by a timer, so a reloaded
    page re-attaches."""
    from lmdemo.train import runlog
    from lmdemo.train.worker import JOBS

    st = JOBS.poll(owner_of(request))
    lang = lang_of(request)
    if st.state == "idle":
        return say("slot_busy" if JOBS.busy() else "no_job", lang), None, None, *comparison_frames(None, lang)
    eta = say("eta", lang, eta=st.eta_seconds) if st.eta_seconds is not None and st.running else ""
    rate = say("rate", lang, rate=st.steps_per_second) if st.running else ""
    line = (say("job_line", lang, name=plain(st.name), task=word(st.task, lang), state=word(st.state, lang),
                step=st.step, max=st.max_steps or "?", rate=rate, eta=eta, elapsed=st.elapsed,
                message=plain(message(st.message, lang)))
            + (f"  \n{plain(versus(st.run['actual'], st.run.get('estimate'), lang))}" if st.run.get("actual") else "")
            + "".join(f"  \n{line}" for line in _verdict((st.comparison or {}).get("paired"),
                                                           runlog.worse_figures(st.task, st.comparison), lang))
            + "".join(f"  \n_{plain(message(note, lang))}_" for note in st.notes)
            + ("  \n" + say("restored", lang) if st.restored else ""))
    return (line, *loss_frames(st.losses, lang), *comparison_frames(st.comparison, lang))


def loss_frames(points: list[dict], lang: str = "en"):
    """(train loss, validation loss) plots of a run's curve points, empty where a series has no point yet."""
    import pandas as pd

    def curve(key: str):
        rows = [{"step": p["step"], "loss": p[key]} for p in points if key in p]
        return gr.LinePlot(value=pd.DataFrame(rows) if rows else None, x_title=word("step", lang),
                           y_title=word("loss", lang))
    return curve("loss"), curve("eval_loss")


def comparison_frames(comparison: dict, lang: str = "en"):
    """(metrics table, side-by-side examples) of a base vs fine-tuned comparison; empty tables before there is one."""
    import pandas as pd

    # no comparison (yet): empty tables with the headers in the visitor's language
    metrics = pd.DataFrame(columns=[word(c, lang) for c in ("model", "accuracy", "f1")])
    examples = pd.DataFrame(columns=[word(c, lang) for c in ("input", "reference", "base", "fine-tuned")])
    if comparison:
        cmp = comparison
        names = list(cmp["metrics"]["base"])
        metrics = pd.DataFrame([[word(who, lang), *[round(v, 4) for v in cmp["metrics"][who].values()]]
                                for who in ("base", "fine-tuned")],
                               columns=[word(c, lang) for c in ("model", *names)])
        examples = pd.DataFrame(cmp.get("examples") or []).rename(columns=lambda c: word(c, lang))
    return metrics, examples


def adapters_signature(request: gr.Request | None = None) -> str:
    """The caller's visible adapters and their save times: it changes when one is added, retrained or removed, or
    its run record is written."""
    from lmdemo.models.adapters import list_adapters

    from lmdemo.train.runlog import RUN_FILE

    def saved(path: Path) -> int:
        try:
            return path.stat().st_mtime_ns
        except OSError:  # not there (yet), or removed meanwhile
            return 0
    # run.json comes after the adapter (the comparison runs in between): a change of either counts
    return ";".join(f"{a.name}:{saved(a.path / 'adapter_config.json')}:{saved(a.path / RUN_FILE)}"
                    for a in list_adapters(owner=owner_of(request)))


def _own_runs(request: gr.Request | None) -> dict[str, Path]:
    """The caller's adapters that carry a run record (their own only: settings and timings are theirs)."""
    from lmdemo.models.adapters import list_adapters
    from lmdemo.train.runlog import RUN_FILE

    return {a.name: a.path for a in list_adapters(owner=owner_of(request))
            if a.owned and (a.path / RUN_FILE).is_file()}


def past_run_choices(request: gr.Request = None):
    """The Past runs picker: the caller's runs, newest first."""
    names = list(_own_runs(request))
    return gr.Dropdown(choices=names, value=names[0] if names else None)


@friendly
def show_past_run(name: str | None, request: gr.Request = None):
    """A past run's settings, figures and curves, read back from its adapter folder."""
    from lmdemo.train import runlog

    lang = lang_of(request)
    if not name:
        return say("no_past_run", lang), *loss_frames([], lang)
    folder = _own_runs(request).get(name)
    if folder is None:
        raise InputError(f"No run record for {name!r} among your adapters.")
    rec = runlog.read(folder)
    settings = ", ".join(f"{word(k, lang)} {v}" for k, v in (rec.get("settings") or {}).items() if v is not None)
    metrics = rec.get("metrics") or {}
    scores = " · ".join(f"{word(who, lang)}: " + ", ".join(f"{word(k, lang)} {v:.3f}"
                                                           for k, v in (metrics.get(who) or {}).items()
                                                           if isinstance(v, (int, float)))
                        for who in ("base", "fine-tuned") if metrics.get(who))
    task = str(rec.get("task", "?"))
    lines = [say("past_head", lang, name=plain(name), task=plain(word(task, lang)),
                 finished=plain(rec.get("finished", "?"))) + (say("stopped_early", lang) if rec.get("stopped") else ""),
             plain(versus(rec.get("actual") or {}, rec.get("estimate"), lang)),
             say("settings", lang, settings=plain(settings))] + ([plain(scores)] if scores else [])
    lines += _verdict(rec.get("paired"), runlog.worse_figures(task, {"metrics": metrics}), lang)
    return "  \n".join(lines), *loss_frames(rec.get("curve") or [], lang)


def _verdict(paired: dict | None, worse: tuple | None, lang: str = "en") -> list[str]:
    """A finished run's verdict as Markdown lines: the paired comparison, then the worse-than-base warning in bold."""
    sentence = paired_text(paired, lang)
    from lmdemo.train import runlog

    warning = None
    if worse:
        warning = (say_zh("worse", metric=word(worse[0], lang), tuned=worse[1], base=worse[2]) if lang == "zh"
                   else runlog.worse_sentence(*worse))
    return ([plain(sentence)] if sentence else []) + ([f"**⚠️ {plain(warning)}**"] if warning else [])


def paired_text(paired: dict | None, lang: str, names: tuple[str, str] | None = None, rows: str = "validation example",
                decimals: int = 2) -> str | None:
    """The paired comparison's sentence (lmdemo.models.adapters.paired_sentence) in the visitor's language:
    fine-tuned vs base, or `names` = (second, first) for two evaluated models."""
    from lmdemo.models.adapters import METRIC_NAMES, paired_sentence

    english = paired_sentence(paired, names or ("Fine-tuned", "base"), rows, decimals)
    if lang != "zh" or not english:
        return english
    low, high = paired["ci95"]
    second, first = names or ("微调模型", "基础模型")
    return say_zh("paired", n=paired["n"], rows=word(rows, lang), second=second, first=first, wins=paired["wins"],
                  losses=paired["losses"], ties=paired["ties"],
                  metric=word(METRIC_NAMES.get(paired.get("metric"), paired.get("metric")), lang),
                  diff=f"{paired['difference']:+.{decimals}f}", low=f"{low:+.{decimals}f}", high=f"{high:+.{decimals}f}",
                  direction="" if paired.get("higher_is_better", True) else say("lower_better", lang),
                  verdict=say("includes_zero" if low <= 0 <= high else "excludes_zero", lang))


def versus(actual: dict, estimate: dict | None, lang: str) -> str:
    """The estimate beside what the run took (lmdemo.train.runlog.versus) in the visitor's language."""
    from lmdemo.train import runlog

    if lang != "zh":
        return runlog.versus(actual, estimate)

    def part(seconds, per_step, mb) -> str:
        bits = ([say_zh("seconds", v=seconds)] if seconds is not None else []) + (
            [say_zh("per_step", v=per_step)] if per_step is not None else []) + (
            [f"{mb:.0f} MB"] if mb is not None else [])
        return "，".join(bits) or "?"
    done = part(actual.get("train_seconds"), actual.get("seconds_per_step"), actual.get("peak_memory_mb"))
    if not estimate:
        return say_zh("took", done=done, steps=actual.get("steps", 0))
    guess = part(estimate.get("total_seconds") or None, estimate.get("seconds_per_step"), estimate.get("peak_memory_mb"))
    return say_zh("estimated_took", guess=guess, done=done, steps=actual.get("steps", 0))


# ---------------------------------------------------------------- adapters

def adapters_list(request: gr.Request | None = None) -> list[dict[str, Any]]:
    """The caller's adapters, then the shared ones (bundled, the operator's)."""
    from lmdemo.models.adapters import list_adapters

    return [a.to_dict() for a in list_adapters(owner=owner_of(request))]


def adapters_table(request: gr.Request = None):
    lang = lang_of(request)
    rows = [[a["name"], word(a["task"], lang),
             a["base_model"] if a["owned"] or not get_settings().demo_mode else say("shared", lang),
             ", ".join(f"{word(k, lang)} {v:.3f}" for k, v in a["metrics"].items() if isinstance(v, (int, float)))]
            for a in adapters_list(request)]
    return gr.Dataframe(value=rows, headers=[word(h, lang) for h in ("name", "task", "base", "metrics")])


def remove_named(name: str, request: gr.Request | None) -> None:
    """Delete one of the caller's adapters and every cached copy of it."""
    from lmdemo.models.adapters import remove
    from lmdemo.models.loading import CACHE

    CACHE.forget_adapter(remove(need(name, request), owner=owner_of(request)))


@friendly
def remove_adapter(name: str, request: gr.Request = None):
    remove_named(name, request)
    gr.Info(say("removed", lang_of(request), name=name))
    return adapters_table(request)


def acting_on(name: str, request: gr.Request | None) -> Path:
    """The folder of an adapter the caller may merge or push: on a shared Space one of their own; the operator
    may name any adapter (a folder, a bundled one, a Hub repo)."""
    from lmdemo.models.adapters import adapter_dir, owned_adapter

    owner = owner_of(request)
    return adapter_dir(name) if owner is None else owned_adapter(name, owner)


def share_choices(request: gr.Request = None):
    """The Share picker: only adapters the caller may push."""
    return gr.Dropdown(choices=[a["name"] for a in adapters_list(request) if a["owned"]])


def merge_into_folder(name: str, request: gr.Request | None = None) -> Path:
    """Merge one of the caller's adapters into its base; the full model goes to $LMDEMO_HOME/merged/NAME."""
    from lmdemo.models.adapters import safe_name
    from lmdemo.models.merge import merge

    if get_settings().demo_mode:
        raise InputError("Merging writes a full copy of the base model; it is off on this shared app. "
                         "Push the adapter, or run lmdemo on your own machine to merge.")
    folder = acting_on(name, request)
    out = get_settings().home / "merged" / safe_name(Path(name).name)
    merge(str(folder), out)
    return out


@friendly
def merge_adapter(name: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    out = merge_into_folder(need(name, request), request)
    return say("merged", lang_of(request), out=out)


# ---------------------------------------------------------------- sharing

def dry_run(adapter: str, repo_id: str, request: gr.Request | None = None):
    """Build the exact upload folder of one of the caller's adapters (nothing leaves the machine):
    (PushResult, its README.md card)."""
    from lmdemo.models.adapters import push
    from lmdemo.models.hub import check_repo_id

    folder = acting_on(adapter, request)
    out = scratch("share-") / check_repo_id(repo_id).replace("/", "--")
    result = push(str(folder), repo_id, dry_run=out)
    return result, (out / "README.md").read_text(encoding="utf-8")


def push_adapter(adapter: str, repo_id: str, private: bool, token: str | None, request: gr.Request | None = None):
    """Push one of the caller's adapters with the given token, else (inside push, never in demo mode) HF_TOKEN /
    the stored login; no token reaches a message."""
    from lmdemo.errors import HubError
    from lmdemo.models.adapters import push
    from lmdemo.models.hub import scrub

    folder = acting_on(adapter, request)
    try:
        return push(str(folder), repo_id, private=bool(private), token=token or None)
    except LmdemoError:
        raise
    except Exception as exc:  # unexpected: report it without letting a token reach the log or the page
        from huggingface_hub import get_token

        raise HubError(f"Push failed: {type(exc).__name__}: {scrub(str(exc), token or get_token())}") from None


@friendly
def share_dry_run(adapter: str, repo_id: str, private: bool, token: str, request: gr.Request = None):
    """Build the exact upload folder and show its card; nothing leaves the machine."""
    repo_id = need(repo_id, request)
    result, card = dry_run(need(adapter, request), repo_id, request)
    return say("dry_run", lang_of(request), repo=repo_id, files=", ".join(f"`{f}`" for f in result.files)), card


@friendly
def share_push(adapter: str, repo_id: str, private: bool, token: str, oauth_token: gr.OAuthToken | None = None,
               request: gr.Request = None):
    """Push with the typed token, else the login button's, else (inside push) HF_TOKEN / the stored login."""
    adapter, repo_id = need(adapter, request), need(repo_id, request)
    secret = (token or "").strip() or (oauth_token.token if oauth_token is not None else None)
    result = push_adapter(adapter, repo_id, private, secret, request)
    return say("pushed", lang_of(request), files=", ".join(f"`{f}`" for f in result.files), repo=repo_id,
               url=result.url or repo_id), None
