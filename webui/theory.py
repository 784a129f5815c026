"""The LM lab's theory views on the page: attention heatmap, position encodings, and the LSTM trained beside the
bigram and the Transformer. Rendering only; the numbers come from lmdemo.jobs.lmtheory and lmdemo.jobs.lstm_lm."""

from __future__ import annotations

import html
import math
import threading

import gradio as gr
import numpy as np

from lmdemo.errors import InputError
from lmdemo.jobs.base import defaults
from lmdemo.jobs.lmtheory import (ROPE_NOTE, AttentionRequest, RopeRequest, SideBySideRequest, SinusoidalRequest,
                                  attention, attention_shape, rope, side_by_side, sinusoidal)
from lmdemo.jobs.lstm_lm import LstmStep, LstmTrainRequest, get_lstm, train_lstm

from .handlers import friendly, need, owner_of, pick
from .i18n import lang_of, message, notes, say, say_zh, word

ATTN = defaults(AttentionRequest)
SINUS = defaults(SinusoidalRequest)
LSTM = defaults(LstmTrainRequest)
SBS = defaults(SideBySideRequest)
PLOT_EVERY_S = 0.5  # how often the live loss curve is redrawn
IMAGE_SIDE = 512  # the sinusoidal table is scaled up to about this many pixels a side


def parse_indices(value, name: str) -> tuple[int, ...]:
    """'0, 1, 8' (a box) or a list (an API client) as whole numbers; the request bounds them."""
    if isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [p for p in str(value or "").replace(",", " ").split() if p]
    out = []
    for p in parts:
        try:
            out.append(int(p))
        except (TypeError, ValueError):
            raise InputError(f"`{name}` must be whole numbers separated by commas; got {p!r}.") from None
    return tuple(out)


# ---------------------------------------------------------------- attention

def shape_sliders(model: str, request: gr.Request = None):
    """The layer and head sliders' ranges for the model in the box (unchanged when its config is not readable)."""
    shape = attention_shape(pick(model, request)[0])
    if shape is None:
        return gr.Slider(), gr.Slider()
    layers, heads = shape
    return gr.Slider(maximum=layers - 1), gr.Slider(maximum=heads - 1)


def _shown(token: str) -> str:
    return token.replace("\n", "⏎").strip() or "␣"


def heatmap_html(tokens: list[str], weights: list[list[float]]) -> str:
    """A table, one row per query token and one column per key token; shade = sqrt(weight) so small weights show."""
    head = "".join(f'<th class="attn-col" title="{html.escape(repr(t))}">{html.escape(_shown(t))}</th>'
                   for t in tokens)
    rows = []
    for i, (tok, row) in enumerate(zip(tokens, weights)):
        cells = "".join(
            f'<td data-i="{i}" data-j="{j}" data-w="{w:.6f}" title="{html.escape(repr(tok))} → '
            f'{html.escape(repr(tokens[j]))}: {w:.1%}" style="background: rgba(234, 88, 12, {math.sqrt(max(w, 0)):.3f})">'
            "</td>" for j, w in enumerate(row))
        rows.append(f'<tr><th class="attn-row" title="{html.escape(repr(tok))}">{html.escape(_shown(tok))}</th>{cells}</tr>')
    return ('<div class="attn-wrap"><style>'
            ".attn-wrap{overflow:auto;max-height:720px}.attn-wrap table{border-collapse:collapse;font-size:11px}"
            ".attn-wrap td{width:14px;min-width:14px;height:14px;padding:0;border:1px solid rgba(128,128,128,.15)}"
            ".attn-wrap th{font-weight:normal;white-space:nowrap;padding:0 4px}"
            ".attn-col{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;height:auto}"
            ".attn-row{text-align:right}"
            f'</style><table id="attention-table"><tr><th></th>{head}</tr>{"".join(rows)}</table></div>')


def _reading(res, lang: str) -> list[str]:
    """The library's plain-language reading, or the same in Chinese."""
    if lang != "zh":
        return res.reading
    out = []
    for i, row in enumerate(res.top):
        if res.causal and i == 0:
            out.append(say_zh("attn_first", token=repr(res.tokens[0])))
            continue
        named = say_zh("attn_then").join(
            f"{say_zh('attn_itself') if j == i else repr(res.tokens[j])} ({w:.0%})" for j, w in row)
        out.append(say_zh("attn_reads", token=repr(res.tokens[i]), named=named))
    return out


@friendly
def show_attention(text: str, layer: float, head: float, model: str, request: gr.Request = None,
                   progress=gr.Progress(track_tqdm=True)):
    model, adapter = pick(model, request)
    res = attention(AttentionRequest(need(text, request), model=adapter or model, layer=layer, head=head))
    lang = lang_of(request)
    header = say("attn_header", lang, model=res.model, layer=res.layer, layers=res.num_layers, head=res.head,
                 heads=res.num_heads, n=len(res.tokens),
                 kind=say("attn_causal" if res.causal else "attn_both", lang))
    if res.note:
        header += f"\n\n_{notes(res.note, lang)}_"
    reading = "\n".join(f"- {line}" for line in _reading(res, lang))
    return (header, heatmap_html(res.tokens, res.weights), reading,
            gr.Slider(maximum=res.num_layers - 1), gr.Slider(maximum=res.num_heads - 1))


# ---------------------------------------------------------------- positional encoding

def _diverging(values: np.ndarray) -> np.ndarray:
    """-1 blue, 0 white, +1 red, as uint8 RGB."""
    v = np.clip(values, -1, 1)[..., None]
    red, blue, white = np.array([214, 39, 40]), np.array([31, 119, 180]), np.array([255, 255, 255])
    rgb = np.where(v >= 0, white + (red - white) * v, white + (blue - white) * -v)
    return rgb.astype(np.uint8)


def table_image(table: list[list[float]]) -> np.ndarray:
    """The positions x d_model table as an image (rows = positions top to bottom), scaled up with square pixels."""
    values = np.asarray(table)
    scale = max(1, IMAGE_SIDE // max(values.shape))
    return np.repeat(np.repeat(_diverging(values), scale, axis=0), scale, axis=1)


@friendly
def show_positions(positions: float, d_model: float, dims: str, model: str, request: gr.Request = None,
                   progress=gr.Progress(track_tqdm=True)):
    import pandas as pd

    lang = lang_of(request)
    res = sinusoidal(SinusoidalRequest(positions=positions, d_model=d_model, dims=parse_indices(dims, "dims")))
    dim_name = word("dimension", lang)
    frame = pd.DataFrame([{"position": p, "value": v, "dimension": f"{dim_name} {d}"}
                          for d, curve in res.curves.items() for p, v in enumerate(curve)])
    waves = " · ".join(say("wavelength", lang, dim=d, length=w) for d, w in res.wavelengths.items())
    sinus_text = say("sinus_caption", lang, positions=res.positions, d_model=res.d_model) + (f"\n\n{waves}" if waves
                                                                                              else "")
    curves = gr.LinePlot(value=frame, x="position", y="value", color="dimension", x_title=word("position", lang),
                         y_title=word("value", lang), color_title=dim_name)
    try:
        rope_md, rope_plot = _rope_view(model, int(positions), lang, request)
    except InputError as exc:  # a model without rotary positions (an encoder) still gets its sinusoidal view
        rope_md, rope_plot = f"_{message(str(exc), lang)}_", gr.LinePlot(value=None)
    return table_image(res.table), sinus_text, curves, rope_md, rope_plot


def _rope_view(model: str, positions: int, lang: str, request):
    import pandas as pd

    base, _ = pick(model, request)
    res = rope(RopeRequest(model=base, positions=positions))
    rows = []
    lines = [say("rope_head", lang, model=res.model, head_dim=res.head_dim, rotary_dim=res.rotary_dim)]
    for t in res.tables:
        pairs = ", ".join(say("rope_pair", lang, pair=i, freq=t.frequencies[i], length=2 * math.pi / t.frequencies[i])
                          for i in t.curves)
        lines.append(say("rope_table", lang, layers=word(t.layers, lang), theta=t.theta, kind=word(t.rope_type, lang),
                         pairs=pairs))
        for i, curve in t.curves.items():
            label = f"{word('pair', lang)} {i}" + (f" · {word(t.layers, lang)}" if len(res.tables) > 1 else "")
            rows += [{"position": p, "cos": v, "pair": label} for p, v in enumerate(curve)]
    if lang == "zh":
        extra = res.note[len(ROPE_NOTE):].strip()  # the library adds a sentence when the model rescales
        lines += [say_zh("rope_note")] + ([message(extra, lang)] if extra else [])
    else:
        lines.append(res.note)
    plot = gr.LinePlot(value=pd.DataFrame(rows), x="position", y="cos", color="pair", x_title=word("position", lang),
                       y_title=f"cos({word('position', lang)} · θᵢ)", color_title=word("pair", lang))
    return "\n\n".join(lines), plot


# ---------------------------------------------------------------- the LSTM beside the bigram and the Transformer

def _loss_plot(steps: list[LstmStep], lang: str):
    import pandas as pd

    frame = pd.DataFrame({"step": [s.step for s in steps], "loss": [s.loss for s in steps]})
    return gr.LinePlot(value=frame, x="step", y="loss", x_title=word("step", lang), y_title=word("loss", lang))


@friendly
def train(corpus: str, steps: float, hidden_size: float, stop: threading.Event, request: gr.Request = None):
    """Trains in a thread and redraws the loss curve while it runs; Stop (or leaving the page) ends it between
    steps and keeps what was trained."""
    lang = lang_of(request)
    req = LstmTrainRequest(need(corpus, request), steps=steps, hidden_size=hidden_size)
    stop.clear()
    seen: list[LstmStep] = []
    done: dict = {}

    def run():
        try:
            done["result"] = train_lstm(req, on_step=seen.append, stop=stop, owner=owner_of(request))
        except Exception as exc:  # noqa: BLE001 - re-raised in the handler, where it becomes a message
            done["error"] = exc

    worker = threading.Thread(target=run, name="lstm-train", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(PLOT_EVERY_S)
            if seen:
                last = seen[-1]
                yield (_loss_plot(list(seen), lang),
                       say("lstm_progress", lang, step=last.step, steps=req.steps, loss=last.loss,
                           ppl=last.perplexity, seconds=last.seconds), gr.skip())
    finally:
        stop.set()  # the page went away or the run was cancelled: the thread stops after its current step
        worker.join()
    if "error" in done:
        raise done["error"]
    res = done["result"]
    line = say("lstm_done", lang, steps=res.steps, reason=say(f"reason_{res.reason}", lang), seconds=res.seconds,
               vocab=res.vocab_size, before=res.perplexity_before, after=res.perplexity_after)
    if res.note:
        line += f" {message(res.note, lang)}"
    stop.clear()
    yield _loss_plot(list(seen), lang), line, res.model_id


def _strip(tokens: list[tuple[str, float]], unit: str) -> list[tuple[str, float]]:
    gap = " " if unit == "word" else ""
    return [(f"{t}{gap}", round(math.exp(lp), 3) if lp > -math.inf else 0.0) for t, lp in tokens]


@friendly
def compare(text: str, lstm_id: str, k: float, model: str, request: gr.Request = None,
            progress=gr.Progress(track_tqdm=True)):
    import pandas as pd

    lang = lang_of(request)
    if not lstm_id:
        raise InputError("Train the LSTM first (the Train button above), then compare.")
    model, adapter = pick(model, request)
    lstm = get_lstm(lstm_id, owner_of(request))
    text = need(text, request)
    res = side_by_side(SideBySideRequest(text, k=k, model=model, adapter=adapter), lstm=lstm)
    strips = [res.bigram, res.lstm, res.transformer]
    shown = [say("name_bigram", lang, k=f"{float(k):g}"), res.lstm.name, res.transformer.name]
    table = "\n".join([say("sbs_head", lang)] + [
        say("sbs_row", lang, name=name, unit=word(s.unit, lang), n=len(s.tokens), ppl=s.perplexity)
        for name, s in zip(shown, strips)])
    note = notes(res.note, lang)
    gates = res.gates
    names = [word(f"{g} gate", lang) for g in ("forget", "input", "output")]
    frame = pd.DataFrame([{"position": f"{n:02d} {g.token}", "gate": name, "mean": value}
                          for n, g in enumerate(gates) for name, value in zip(names, (g.forget, g.input, g.output))])
    plot = gr.LinePlot(value=frame, x="position", y="mean", color="gate", x_title=word("position", lang),
                       y_title=word("mean activation", lang), color_title=word("gate", lang))
    rows = [[g.token, round(g.forget, 3), round(g.input, 3), round(g.output, 3)] for g in gates]
    gate_table = gr.Dataframe(value=rows, headers=[word(h, lang) for h in ("token", "forget gate", "input gate", "output gate")])
    labels = [say("strip_label", lang, name=name, ppl=s.perplexity, unit=word(s.unit, lang))
              for name, s in zip(shown, strips)]
    return (f"{table}\n\n_{note}_", *(gr.HighlightedText(value=_strip(s.tokens, s.unit), label=label)
                                     for s, label in zip(strips, labels)), plot, gate_table)

