"""The Gradio app: one function per tab, each wiring components to webui.handlers."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import gradio as gr
from starlette.middleware import Middleware

from lmdemo.config import DEMO_LIMITS, get_settings
from lmdemo.data.tabular import parse_columns
from lmdemo.engine.streaming import GenerationParams
from lmdemo.eval.evaluation import EvalRequest
from lmdemo.jobs.generation import GenerationRequest, generate_stream
from lmdemo.jobs.lmtheory import (MAX_PE_DIM, MAX_PE_POSITIONS, AttentionRequest, RopeRequest, SideBySideRequest,
                                  SinusoidalRequest, attention, attention_shape, rope as rope_encoding, side_by_side,
                                  sinusoidal)
from lmdemo.jobs.lstm_lm import (MAX_HIDDEN, MAX_STEPS as MAX_LSTM_STEPS, LstmTrainRequest, bundled_corpus, get_lstm,
                                 train_lstm)
from lmdemo.jobs.lmlab import (BigramRequest, NextTokensRequest, PerplexityRequest, bigram, next_tokens,
                               perplexity)
from lmdemo.jobs.sentiment import SentimentRequest, run as run_sentiment
from lmdemo.jobs.summarization import SummaryRequest, summarize_stream
from lmdemo.jobs.translation import LANGUAGES, TranslationRequest, translate_stream
from lmdemo.models import store
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL
from lmdemo.serve import openai_api, slots, warmup
from lmdemo.train.plan import FinetuneRequest, estimate_plan, plan

from . import handlers as h
from . import limits, theory
from .handlers import BIGRAM, EVAL, FT, GEN, GEN_REQ, NEXT, SUM, TR
from .i18n import I18N, ui

log = logging.getLogger("lmdemo.webui")
i = ui  # i("key") marks a string for translation in the browser

MAX_FILE_SIZE = "10mb"
CAUSAL_CHOICES = [DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL]
# The summary length slider per unit (within the request's limits: 1-10 sentences, 5-300 words).
SUMMARY_RANGE = {"sentences": (1, 10), "words": (5, 200)}
SUMMARY_STEP = {"sentences": 1, "words": 5}


def _examples(rows: list[list], inputs: list) -> gr.Examples:
    """Examples shown as labelled buttons (the first field, shortened): a table would show raw i18n keys as headers."""
    labels = [str(r[0]) if len(str(r[0])) <= 60 else str(r[0])[:57] + "…" for r in rows]
    return gr.Examples(rows, inputs=inputs, example_labels=labels, label=i("examples"))


def watch_adapters(outputs: list, update) -> None:
    """Refresh ``outputs`` with ``update(request)`` whenever the caller's adapters change (a run just saved one,
    another page removed one), so a new adapter is in every picker at once, without a reload."""
    seen = gr.State("")

    def tick(last: str, request: gr.Request):
        now = h.adapters_signature(request)
        if now == last:
            return [gr.skip()] * (len(outputs) + 1)
        return [now, *update(request)]

    gr.Timer(2.0).tick(tick, seen, [seen, *outputs], queue=False, api_visibility="private", show_progress="hidden")


def _model_box(default: str, choices: list[str]) -> gr.Dropdown:
    return gr.Dropdown(choices=choices, value=default, allow_custom_value=True, label=i("model"), scale=2)


def generate_tab() -> tuple[gr.Dropdown, str, list[str]]:
    stop = gr.State(h.StopEvent())  # one per browser session
    with gr.Row():
        mode = gr.Radio([(i("mode_chat"), "chat"), (i("mode_completion"), "completion")], value=GEN_REQ["mode"],
                        label=i("mode"), scale=2, elem_id="generate-mode")
        model = _model_box(DEFAULT_CHAT_MODEL, CAUSAL_CHOICES)
        quantize = gr.Dropdown([(i("q_none"), "none"), "8bit", "4bit"], value="none", label=i("quantize"), scale=1)
    chatbot = limits.Chatbot(label=i("chat"), height=340)
    prompt = gr.Textbox(label=i("prompt"), lines=2, placeholder=i("ask_anything"))
    with gr.Row():
        send = gr.Button(i("send"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
        clear = gr.Button(i("clear"))
    stats = gr.Markdown(label=i("stats"))
    with gr.Accordion(i("settings"), open=False):
        with gr.Row():
            max_new = gr.Slider(1, 1024, value=GEN["max_new_tokens"], step=1, label=i("max_new_tokens"),
                                elem_id="generate-max_new_tokens")
            temperature = gr.Slider(0, 2, value=GEN["temperature"], step=0.05, label=i("temperature"),
                                    elem_id="generate-temperature")
            top_p = gr.Slider(0.05, 1, value=GEN["top_p"], step=0.05, label=i("top_p"), elem_id="generate-top_p")
        with gr.Row():
            top_k = gr.Slider(0, 200, value=GEN["top_k"], step=1, label=i("top_k"), elem_id="generate-top_k")
            rep = gr.Slider(0.8, 2, value=GEN["repetition_penalty"], step=0.05, label=i("repetition_penalty"),
                            elem_id="generate-repetition_penalty")
            seed = gr.Number(value=GEN["seed"], precision=0, label=i("seed"), elem_id="generate-seed")
    _examples([["What is a language model? Answer in two sentences.", "chat"],
                 ["Give me three tips for a job interview.", "chat"],
                 ["Explain photosynthesis to a ten-year-old.", "chat"],
                 ["Once upon a time, in a small village by the sea,", "completion"]],
                inputs=[prompt, mode])

    mode.change(lambda m: DEFAULT_CHAT_MODEL if m == "chat" else DEFAULT_COMPLETION_MODEL, mode, model, queue=False,
                api_visibility="private")
    reply_inputs = [chatbot, mode, model, quantize, max_new, temperature, top_p, top_k, rep, seed, stop]
    events = []
    # The chat and its Stop are "undocumented": left out of the API page, but a script (bench/soak.py) can drive
    # two sessions through the same events the page uses, to check that one session never sees another's state.
    for trigger in (send.click, prompt.submit):
        ev = trigger(h.add_user_message, [prompt, chatbot], [prompt, chatbot], queue=False,
                     api_name="ui_add_message", api_visibility="private").then(
            h.in_slot(h.chat_reply), reply_inputs, [chatbot, stats], concurrency_id="causal-lm", api_name="ui_chat",
            api_visibility="undocumented")
        events.append(ev)
    stop_btn.click(h.stop_generation, stop, None, queue=False, cancels=events, api_name="ui_stop_chat",
                   api_visibility="undocumented")
    clear.click(lambda: ([], ""), None, [chatbot, stats], queue=False, api_name="ui_stop_generation", api_visibility="private")
    return model, ("sft", "engines"), CAUSAL_CHOICES


def sentiment_tab() -> tuple[gr.Dropdown, str, list[str]]:
    model = gr.Dropdown([(i("bundled_sentiment"), h.BUNDLED_SENTIMENT)], value=h.BUNDLED_SENTIMENT, allow_custom_value=True,
                        label=i("model"))
    with gr.Row():
        with gr.Column():
            text_in = gr.Textbox(label=i("text"), lines=3)
            run = gr.Button(i("classify"), variant="primary")
        label = gr.Label(label=i("sentiment_label"), num_top_classes=2)
    _examples([["The battery lasts all day and the screen is gorgeous."],
                 ["Not worth the money: it broke after two days."],
                 ["The food was cold and the waiter ignored us, but the dessert was nice."],
                 ["I waited forty minutes on hold and then the line went dead."]], inputs=[text_in])
    run.click(h.sentiment_one, [text_in, model], label, concurrency_id="encoder",
              api_name="ui_sentiment_one", api_visibility="private")
    text_in.submit(h.sentiment_one, [text_in, model], label, concurrency_id="encoder", api_name="ui_sentiment_submit",
                   api_visibility="private")
    with gr.Accordion(i("batch"), open=False):
        with gr.Row():
            lines = gr.Textbox(label=i("batch_text"), lines=5)
            upload = limits.File(label=i("batch_file"), file_types=[".txt", ".csv", ".tsv"], type="filepath")
        run_all = gr.Button(i("classify_all"))
        table = gr.Dataframe(headers=["text", "label", "score"], label=i("results"), wrap=True)
        download = gr.DownloadButton(i("download"), visible=False)
    run_all.click(h.sentiment_batch, [lines, upload, model], [table, download], concurrency_id="encoder",
                  api_name="ui_sentiment_batch", api_visibility="private")
    return model, "classification", [(i("bundled_sentiment"), h.BUNDLED_SENTIMENT)]


def summarise_tab() -> tuple[gr.Dropdown, tuple[str, ...], list[str]]:
    stop = gr.State(h.StopEvent())
    choices = [(i("default_summariser"), "default"), DEFAULT_CHAT_MODEL]
    model = _model_box("default", choices)
    text_in = gr.Textbox(label=i("summary_text"), lines=8)
    with gr.Row():
        unit = gr.Radio([(i("sentences"), "sentences"), (i("words"), "words")], value=SUM["unit"],
                        label=i("length_unit"), elem_id="summarize-unit")
        length = gr.Slider(*SUMMARY_RANGE[SUM["unit"]], value=SUM["length"], step=SUMMARY_STEP[SUM["unit"]],
                           label=i("length"), elem_id="summarize-length")
    with gr.Row():
        run = gr.Button(i("summarise"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
    summary = gr.Textbox(label=i("summary"), lines=4)
    lengths = gr.Markdown()
    _examples([[
        "The city council voted on Tuesday to build a new public library in the town centre. The project will cost "
        "12 million euros and is expected to open in 2028. Supporters said the current library is too small and lacks "
        "modern facilities such as computers and study rooms. Opponents argued that the money should be spent on "
        "repairing roads. The mayor said construction would begin next spring and promised that local companies "
        "would be hired.", "sentences", 1]], inputs=[text_in, unit, length])
    unit.change(lambda u: gr.Slider(*SUMMARY_RANGE[u], value=SUM["length"] if u == SUM["unit"] else 40,
                                    step=SUMMARY_STEP[u]),
                unit, length, queue=False, api_visibility="private")
    ev = run.click(h.in_slot(h.summarise), [text_in, unit, length, model, stop], [summary, lengths],
                   concurrency_id="causal-lm", api_name="ui_summarise", api_visibility="private")
    stop_btn.click(h.stop_generation, stop, None, queue=False, cancels=[ev], api_name="ui_stop_generation", api_visibility="private")
    return model, ("sft", "summarisation", "engines"), choices


def translate_tab() -> tuple[gr.Dropdown, tuple[str, ...], list[str]]:
    stop = gr.State(h.StopEvent())
    langs = [(i(f"lang_{code}"), code) for code in LANGUAGES]
    with gr.Row():
        source = gr.Dropdown(langs, value=TR["source"], label=i("source_lang"), elem_id="translate-source")
        swap = gr.Button(i("swap"), scale=0, min_width=90)
        target = gr.Dropdown(langs, value=TR["target"], label=i("target_lang"), elem_id="translate-target")
        model = _model_box(DEFAULT_COMPLETION_MODEL, [DEFAULT_COMPLETION_MODEL])
    with gr.Row():
        text_in = gr.Textbox(label=i("source_text"), lines=5)
        out = gr.Textbox(label=i("translation"), lines=5)
    with gr.Row():
        run = gr.Button(i("translate"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
    speed = gr.Markdown()
    _examples([["I would like a cup of coffee, please.", "en", "fr"],
                 ["The train to Berlin leaves at eight o'clock. Please don't be late.", "en", "de"],
                 ["¿Dónde está el museo más cercano?", "es", "en"],
                 ["我们明天早上去爬山。", "zh", "en"]], inputs=[text_in, source, target])
    ev = run.click(h.in_slot(h.translate), [text_in, source, target, model, stop], [out, speed],
                   concurrency_id="causal-lm", api_name="ui_translate", api_visibility="private")
    stop_btn.click(h.stop_generation, stop, None, queue=False, cancels=[ev], api_name="ui_stop_generation", api_visibility="private")
    swap.click(h.swap_languages, [source, target, text_in, out], [source, target, text_in, out], queue=False,
               api_name="ui_swap_languages", api_visibility="private")
    return model, ("sft", "translation", "engines"), [DEFAULT_COMPLETION_MODEL]


def lab_tab() -> tuple[gr.Dropdown, str, list[str]]:
    model = _model_box(DEFAULT_CHAT_MODEL, CAUSAL_CHOICES)
    with gr.Tabs():
        with gr.Tab(i("lab_probs")):
            probabilities_view(model)
        with gr.Tab(i("lab_attention")):
            attention_view(model)
        with gr.Tab(i("lab_positions")):
            positions_view(model)
        with gr.Tab(i("lab_lstm")):
            lstm_view(model)
    return model, "sft", CAUSAL_CHOICES


def probabilities_view(model: gr.Dropdown) -> None:
    with gr.Group():
        gr.Markdown(i("lab_score"))
        text_in = gr.Textbox(label=i("text"), value="The cat sat on the mat.", lines=2)
        run = gr.Button(i("score"), variant="primary")
        strip = gr.HighlightedText(label=i("token_strip"), show_legend=False, combine_adjacent=False)
        summary = gr.Markdown()
        with gr.Accordion(i("token_table"), open=False):
            table = gr.Dataframe(headers=["token", "log p", "p"])
    run.click(h.in_slot(h.lab_score), [text_in, model], [strip, summary, table], concurrency_id="causal-lm",
              api_name="ui_lab_score", api_visibility="private")
    with gr.Group():
        gr.Markdown(i("lab_next"))
        with gr.Row():
            prefix = gr.Textbox(label=i("prefix"), value="The capital of France is", scale=3)
            k = gr.Slider(1, 30, value=NEXT["k"], step=1, label=i("top_k_show"), elem_id="next_tokens-k")
        run_next = gr.Button(i("predict"))
        plot = gr.BarPlot(x="token", y="probability", label=i("next_plot"), sort="-y", height=300)
    run_next.click(h.in_slot(h.lab_next), [prefix, k, model], plot, concurrency_id="causal-lm", api_name="ui_lab_next",
                   api_visibility="private")
    with gr.Group():
        gr.Markdown(i("lab_bigram"))
        corpus = gr.Textbox(label=i("corpus"), lines=4, value=(
            "the cat sat on the mat.\nthe dog sat on the rug.\na cat and a dog played on the mat.\n"
            "the cat slept on the rug."))
        smoothing = gr.Number(value=BIGRAM["k"], label=i("smoothing"), elem_id="bigram-k")
        run_cmp = gr.Button(i("compare"))
        comparison = gr.Markdown()
    run_cmp.click(h.in_slot(h.lab_bigram), [text_in, corpus, smoothing, model], comparison, concurrency_id="causal-lm",
                  api_name="ui_lab_bigram", api_visibility="private")


def attention_view(model: gr.Dropdown) -> None:
    gr.Markdown(i("attn_intro"))
    with gr.Row():
        text_in = gr.Textbox(label=i("attn_text"), value="The cat sat on the mat because it was warm.", scale=3)
        shape = attention_shape(DEFAULT_CHAT_MODEL) or (32, 32)  # updated from the model's config when it changes
        layer = gr.Slider(0, shape[0] - 1, value=theory.ATTN["layer"], step=1, label=i("layer"),
                          elem_id="attention-layer")
        head = gr.Slider(0, shape[1] - 1, value=theory.ATTN["head"], step=1, label=i("head"), elem_id="attention-head")
    run = gr.Button(i("show_attention"), variant="primary")
    header = gr.Markdown(elem_id="attention-header")
    heatmap = gr.HTML(elem_id="attention-map")
    with gr.Accordion(i("attn_reading"), open=True):
        reading = gr.Markdown(elem_id="attention-reading")
    run.click(h.in_slot(theory.show_attention), [text_in, layer, head, model], [header, heatmap, reading, layer, head],
              concurrency_id="causal-lm", api_name="ui_lab_attention", api_visibility="private")
    model.change(theory.shape_sliders, model, [layer, head], queue=False, api_name="ui_lab_attention_shape",
                 api_visibility="private")


def positions_view(model: gr.Dropdown) -> None:
    gr.Markdown(i("pe_intro"))
    with gr.Row():
        positions = gr.Slider(1, MAX_PE_POSITIONS, value=theory.SINUS["positions"], step=1, label=i("pe_positions"),
                              elem_id="pe-positions")
        d_model = gr.Slider(2, MAX_PE_DIM, value=theory.SINUS["d_model"], step=2, label=i("d_model"),
                            elem_id="pe-d-model")
        dims = gr.Textbox(value=", ".join(map(str, theory.SINUS["dims"])), label=i("pe_dims"), elem_id="pe-dims")
    run = gr.Button(i("plot_positions"), variant="primary")
    with gr.Row():
        with gr.Column():
            image = gr.Image(label=i("pe_table"), type="numpy", interactive=False, elem_id="pe-image")
            caption = gr.Markdown(elem_id="pe-caption")
        curves = gr.LinePlot(label=i("pe_curves"), height=360, elem_id="pe-curves")
    gr.Markdown(i("rope_intro"))
    with gr.Row():
        rope_text = gr.Markdown(elem_id="rope-text")
        rope_plot = gr.LinePlot(label=i("rope_curves"), height=360, elem_id="rope-curves")
    run.click(h.in_slot(theory.show_positions), [positions, d_model, dims, model],
              [image, caption, curves, rope_text, rope_plot], concurrency_id="causal-lm", api_name="ui_lab_positions",
              api_visibility="private")


def lstm_view(model: gr.Dropdown) -> None:
    gr.Markdown(i("lstm_intro"))
    lstm_id = gr.State("")
    stop = gr.State(h.StopEvent())
    corpus = gr.Textbox(label=i("lstm_corpus"), value=bundled_corpus(), lines=6, max_lines=12, elem_id="lstm-corpus")
    with gr.Row():
        steps = gr.Slider(1, MAX_LSTM_STEPS, value=theory.LSTM["steps"], step=1, label=i("lstm_steps"),
                          elem_id="lstm-steps")
        hidden = gr.Slider(1, MAX_HIDDEN, value=theory.LSTM["hidden_size"], step=1, label=i("lstm_hidden"),
                           elem_id="lstm-hidden")
    with gr.Row():
        train = gr.Button(i("train_lstm"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
    status = gr.Markdown(elem_id="lstm-status")
    loss = gr.LinePlot(label=i("lstm_loss"), height=260, elem_id="lstm-loss")
    train.click(theory.train, [corpus, steps, hidden, stop], [loss, status, lstm_id], concurrency_id="lstm",
                api_name="ui_lab_lstm_train", api_visibility="private")
    stop_btn.click(h.stop_generation, stop, None, queue=False, api_name="ui_lab_lstm_stop", api_visibility="private")
    with gr.Row():
        text_in = gr.Textbox(label=i("lstm_text"), value="the dogs under the big tree are happy.", scale=3)
        k = gr.Number(value=theory.SBS["k"], label=i("smoothing"), elem_id="lstm-k")
    # agreement across a phrase: the bigram sees "tree are" / "tree is" only, the LSTM the subject too
    _examples([["the dogs under the big tree are happy."], ["the dogs under the big tree is happy."],
               ["the girl in the small boat has a red hat."], ["the girl in the small boat have a red hat."]],
              inputs=[text_in])
    run = gr.Button(i("compare3"))
    table = gr.Markdown(elem_id="lstm-compare")
    strips = [gr.HighlightedText(label=i(f"strip_{name}"), show_legend=False, combine_adjacent=False,
                                 elem_id=f"strip-{name}") for name in ("bigram", "lstm", "transformer")]
    gates = gr.LinePlot(label=i("gates_plot"), height=380, x_label_angle=-45, elem_id="lstm-gates")
    with gr.Accordion(i("gates_table"), open=False):
        gate_rows = gr.Dataframe(headers=["token", "forget gate", "input gate", "output gate"], elem_id="gate-table")
    run.click(h.in_slot(theory.compare), [text_in, lstm_id, k, model], [table, *strips, gates, gate_rows],
              concurrency_id="causal-lm", api_name="ui_lab_lstm_compare", api_visibility="private")


def evaluate_tab() -> None:
    with gr.Row():
        task = gr.Dropdown([(i(f"task_{t}"), t) for t in ("sentiment", "classification", "translation", "summarisation",
                                                           "generation")],
                           value=EVAL["task"], label=i("task"), elem_id="evaluate-task")
        limit = gr.Slider(1, 400, value=EVAL["limit"], step=1, label=i("limit"), elem_id="evaluate-limit")
    with gr.Row():
        models = gr.Textbox(value=", ".join(EVAL["models"]), label=i("eval_models"), scale=2,
                            elem_id="evaluate-models")
        upload = limits.File(label=i("eval_file"), file_types=[".jsonl", ".csv", ".tsv"], type="filepath")
    langs = [(i(f"lang_{code}"), code) for code in LANGUAGES]
    with gr.Row(visible=EVAL["task"] == "translation") as pair_row:  # for files without language columns
        source = gr.Dropdown(langs, value=TR["source"], label=i("source_lang"), elem_id="evaluate-source")
        target = gr.Dropdown(langs, value=TR["target"], label=i("target_lang"), elem_id="evaluate-target")
    task.change(lambda t: gr.Row(visible=t == "translation"), task, pair_row, queue=False, api_visibility="private")
    with gr.Row():
        run = gr.Button(i("evaluate"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
    with gr.Row():
        table = gr.Dataframe(label=i("metrics"), headers=["model", "n", "metric"], interactive=False)
        chart = gr.BarPlot(x="bar", y="value", color="model", label=i("metrics"), height=280)
    paired = gr.Markdown(elem_id="evaluate-paired")  # two models: the second against the first, per example
    examples = gr.Dataframe(label=i("per_example"), headers=["input", "reference", "prediction"], wrap=True,
                            interactive=False)
    download = gr.DownloadButton(i("download_json"), visible=False)
    stop = gr.State(h.StopEvent())
    ev = run.click(h.in_slot(h.run_evaluation), [task, upload, models, limit, stop, source, target],
                   [table, chart, examples, download, paired],
                   concurrency_id="causal-lm", api_name="ui_evaluate", api_visibility="private")
    # The flag stops the scoring between examples (cancelling the event would leave it running), and the run
    # then ends with "Evaluation stopped after N of M examples" on the page.
    stop_btn.click(h.stop_generation, stop, None, queue=False, api_name="ui_stop_eval", api_visibility="private")


def finetune_tab() -> None:
    from lmdemo.data.tabular import SAMPLES

    base_default, epochs_default, lr_default, r_default, *_ = h.task_settings(FT["task"])
    with gr.Row():
        task = gr.Radio([(i(f"ft_{t}"), t) for t in ("classification", "sft", "translation", "summarisation")],
                        value=FT["task"], label=i("task"), elem_id="finetune-task")
        sample = gr.Dropdown([(i(f"sample_{name}"), name) for name in SAMPLES], value="topics (4 classes)",
                             label=i("sample"))
        upload = limits.File(label=i("train_file"), file_types=[".csv", ".jsonl", ".json", ".parquet", ".tsv"],
                         type="filepath", elem_id="finetune-upload")
    with gr.Row():
        first_col = gr.Dropdown([], value=None, allow_custom_value=True, label=i("first_col"))
        second_col = gr.Dropdown([], value=None, allow_custom_value=True, label=i("second_col"))
        check = gr.Button(i("check_data"))
    data_summary = gr.Markdown()
    preview = gr.Dataframe(label=i("preview"), headers=["text", "label"], interactive=False, wrap=True)
    with gr.Accordion(i("train_settings"), open=True):
        with gr.Row():
            base = gr.Dropdown(["all-minilm-l6-v2", "smollm2-135m-instruct", "gemma-3-270m"], value=base_default,
                               allow_custom_value=True, label=i("model"), elem_id="finetune-base", scale=2)
            epochs = gr.Slider(1, 20, value=epochs_default, step=1, label=i("epochs"), elem_id="finetune-epochs")
            lr = gr.Number(value=lr_default, label=i("learning_rate"), elem_id="finetune-learning_rate")
            lora_r = gr.Slider(2, 64, value=r_default, step=2, label=i("lora_r"), elem_id="finetune-lora_r")
            max_steps = gr.Number(value=0, minimum=0, maximum=h.MAX_UI_STEPS, precision=0, label=i("max_steps"),
                                  elem_id="finetune-max-steps")
            quantize = gr.Dropdown([(i("q_none"), "none"), "4bit"], value="none", label=i("quantize"))
            name = gr.Textbox(value="topics", label=i("adapter_name"))
        langs = [(i(f"lang_{code}"), code) for code in LANGUAGES]
        with gr.Row(visible=FT["task"] == "translation") as pair_row:  # a translation run's languages
            ft_source = gr.Dropdown(langs, value="en", label=i("source_lang"), elem_id="finetune-source")
            ft_target = gr.Dropdown(langs, value="fr", label=i("target_lang"), elem_id="finetune-target")
        gpus = h.gpu_count()  # several GPUs: the run can train in one process per GPU (torchrun)
        processes = gr.Slider(1, max(gpus, 2), value=1, step=1, label=i("processes"), visible=gpus > 1,
                              elem_id="finetune-processes")
    with gr.Row():
        estimate_btn = gr.Button(i("estimate"))
        start = gr.Button(i("start"), variant="primary")
        cancel = gr.Button(i("cancel"), variant="stop")
    estimate_md = gr.Markdown()
    status = gr.Markdown()
    # Two plots, not one coloured by series: gradio keeps a plot's first colour domain, and the first
    # points of a run are often validation only, so a train line added later would never be drawn.
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", label=i("loss"), height=240)
        val_plot = gr.LinePlot(x="step", y="loss", label=i("val_loss"), height=240)
    with gr.Row():
        compare_table = gr.Dataframe(label=i("before_after"), headers=["model", "accuracy", "f1"], interactive=False)
    compare_examples = gr.Dataframe(label=i("side_by_side"), headers=["input", "reference", "base", "fine-tuned"],
                                    interactive=False, wrap=True, column_widths=["25%"] * 4)
    with gr.Accordion(i("past_runs"), open=False):
        with gr.Row():
            past_pick = gr.Dropdown(choices=[], value=None, label=i("past_run"), elem_id="past-run", scale=3)
            past_refresh = gr.Button(i("refresh"), scale=0)
        past_md = gr.Markdown(elem_id="past-run-summary")
        with gr.Row():
            past_loss = gr.LinePlot(x="step", y="loss", label=i("past_loss"), height=200)
            past_val = gr.LinePlot(x="step", y="loss", label=i("past_val_loss"), height=200)
    with gr.Accordion(i("adapters"), open=False):
        adapters = gr.Dataframe(headers=["name", "task", "base", "metrics"], interactive=False, elem_id="adapters-table")
        with gr.Row():
            adapter_name = gr.Textbox(label=i("adapter_name"))
            remove = gr.Button(i("remove"))
            merge = gr.Button(i("merge"))
        merge_md = gr.Markdown()
    with gr.Accordion(i("share"), open=False):
        gr.Markdown(i("share_intro"))
        if os.environ.get("OAUTH_CLIENT_ID"):  # only a Space with hf_oauth has a real login flow
            gr.LoginButton()
        with gr.Row():
            share_pick = gr.Dropdown(choices=[], value=None, allow_custom_value=True, label=i("adapter"))
            share_refresh = gr.Button(i("refresh"), scale=0)
            repo_id = gr.Textbox(label=i("repo_id"), placeholder="your-name/my-adapter")
            private = gr.Checkbox(label=i("private"), value=False)
        token = gr.Textbox(label=i("hf_token"), type="password", max_lines=1)
        with gr.Row():
            dry = gr.Button(i("dry_run"))
            push = gr.Button(i("push"), variant="primary")
        share_md = gr.Markdown()
        card = gr.Code(language="markdown", label="README.md", interactive=False)

    task.change(h.task_settings, task, [base, epochs, lr, lora_r, pair_row, sample], queue=False,
                api_visibility="private")
    data_inputs = [task, sample, upload, first_col, second_col]
    for trigger in (check.click, upload.upload, sample.change):
        trigger(h.check_training_data, data_inputs, [preview, data_summary, first_col, second_col],
                api_name="ui_check_data", api_visibility="private")
    estimate_btn.click(h.estimate_training, data_inputs + [base, quantize, lora_r, ft_source, ft_target, epochs,
                                                           max_steps],
                       estimate_md,
                       concurrency_id="training", api_name="ui_estimate", api_visibility="private")
    start.click(h.start_training, data_inputs + [base, epochs, lr, lora_r, quantize, name, ft_source, ft_target,
                                                 processes, max_steps], None,
                api_name="ui_start_training", api_visibility="private")
    cancel.click(h.cancel_training, None, None, api_name="ui_cancel_training", api_visibility="private")
    timer = gr.Timer(1.0)
    timer.tick(h.training_status, None, [status, loss_plot, val_plot, compare_table, compare_examples], queue=False,
               api_visibility="private", show_progress="hidden")
    # Filled on every page load by a private event (a callable value would be published as an API endpoint).
    gr.on(None, h.adapters_table, None, adapters, queue=False, api_visibility="private")
    gr.on(None, h.share_choices, None, share_pick, queue=False, api_visibility="private")
    watch_adapters([share_pick, past_pick], lambda request: [h.share_choices(request), h.past_run_choices(request)])
    past_refresh.click(h.past_run_choices, None, past_pick, queue=False, api_visibility="private")
    past_pick.change(h.show_past_run, past_pick, [past_md, past_loss, past_val], queue=False,
                     api_visibility="private")
    remove.click(h.remove_adapter, adapter_name, adapters, api_name="ui_remove_adapter", api_visibility="private")
    merge.click(h.merge_adapter, adapter_name, merge_md, concurrency_id="training", api_name="ui_merge_adapter",
                api_visibility="private")
    share_refresh.click(h.share_choices, None, share_pick, queue=False, api_visibility="private")
    for button, fn in ((dry, h.share_dry_run), (push, h.share_push)):
        button.click(fn, [share_pick, repo_id, private, token], [share_md, card], concurrency_id="hub",
                     api_name=f"ui_{fn.__name__}", api_visibility="private")


def models_tab() -> None:
    gr.Markdown(i("models_intro"))
    table = gr.Dataframe(headers=["name", "status", "size", "params", "good for", "licence", "PyPI"],
                         interactive=False)
    with gr.Row():
        prepare = gr.Button(i("prepare"))
        refresh = gr.Button(i("refresh"))
    prepare.click(h.prepare_models, None, table, api_name="ui_prepare_models", api_visibility="private")
    gr.on(None, h.models_table, None, table, queue=False, api_visibility="private")  # on page load
    refresh.click(h.models_table, None, table, queue=False, api_name="ui_models_table", api_visibility="private")


# ---------------------------------------------------------------- API (gradio_client)
# Plain, typed endpoints for scripts, documented in the README's API section. Each builds the library's request
# (defaults read from it), calls the library and returns the result's to_dict(); errors are one-line AppErrors.
# The streaming jobs are generators: Client.submit sees the result grow, Client.predict gets the last (whole) one.

@h.friendly
def api_generate(prompt: str, mode: str = GEN_REQ["mode"], model: str = "", max_new_tokens: int = GEN["max_new_tokens"],
                 temperature: float = GEN["temperature"], top_p: float = GEN["top_p"], top_k: int = GEN["top_k"],
                 repetition_penalty: float = GEN["repetition_penalty"], seed: int = GEN["seed"],
                 request: gr.Request = None) -> Iterator[dict]:
    """Generate a chat reply or a completion, streamed; each update has text, tokens, tokens_per_second, ..."""
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                              repetition_penalty=repetition_penalty, seed=seed)
    model, adapter = h.pick(model, request)
    req = GenerationRequest(h.need(prompt, request), mode=mode, model=model, adapter=adapter, params=params)
    for res in generate_stream(req):
        yield res.to_dict()


@h.friendly
def api_sentiment(text: str, model: str = "", request: gr.Request = None) -> dict:
    """Label and score of one text (model: a classification adapter or model; empty = the bundled one)."""
    return run_sentiment(SentimentRequest([h.need(text, request)], **h.sentiment_model(model, request))).results[0].to_dict()


@h.friendly
def api_sentiment_batch(texts: list[str], model: str = "", request: gr.Request = None) -> list[dict]:
    """Label and score of each text."""
    req = SentimentRequest(list(texts or []), **h.sentiment_model(model, request))
    return [r.to_dict() for r in run_sentiment(req).results]


@h.friendly
def api_summarize(text: str, length: int = SUM["length"], unit: str = SUM["unit"], model: str = "",
                  request: gr.Request = None) -> Iterator[dict]:
    """Summary of a text (length in sentences or words), streamed; with input and summary lengths."""
    model, adapter = h.pick(model, request)
    req = SummaryRequest(h.need(text, request), length=length, unit=unit, model=model, adapter=adapter)
    for res in summarize_stream(req):
        yield res.to_dict()


@h.friendly
def api_translate(text: str, source: str = TR["source"], target: str = TR["target"], model: str = "",
                  request: gr.Request = None) -> Iterator[dict]:
    """Translation of a text between en, fr, de, es and zh, streamed sentence by sentence."""
    model, adapter = h.pick(model, request)
    for res in translate_stream(TranslationRequest(h.need(text, request), source, target, model=model,
                                                   adapter=adapter)):
        yield res.to_dict()


@h.friendly
def api_perplexity(text: str, model: str = "", request: gr.Request = None) -> dict:
    """Per-token log-probabilities and perplexity under a causal LM."""
    model, adapter = h.pick(model, request)
    return perplexity(PerplexityRequest(h.need(text, request), model=model, adapter=adapter)).to_dict()


@h.friendly
def api_next_tokens(prefix: str, k: int = NEXT["k"], model: str = "", request: gr.Request = None) -> dict:
    """Top-k next tokens with probabilities."""
    model, adapter = h.pick(model, request)
    return next_tokens(NextTokensRequest(h.need(prefix, request), k=k, model=model, adapter=adapter)).to_dict()


@h.friendly
def api_bigram(text: str, corpus: str, k: float = BIGRAM["k"], model: str = "", request: gr.Request = None) -> dict:
    """Perplexity of a text under the neural LM and under a bigram model (add-k) fitted on the corpus."""
    model, adapter = h.pick(model, request)
    req = BigramRequest(h.need(text, request), h.need(corpus, request), k=k, model=model, adapter=adapter)
    return bigram(req).to_dict()


@h.friendly
def api_attention(text: str, model: str = "", layer: int = theory.ATTN["layer"], head: int = theory.ATTN["head"],
                  request: gr.Request = None) -> dict:
    """One layer and head's attention weights over a short text (a causal LM or an encoder), with a reading."""
    model, adapter = h.pick(model, request)
    return attention(AttentionRequest(h.need(text, request), model=adapter or model, layer=layer,
                                      head=head)).to_dict()


@h.friendly
def api_positions(positions: int = theory.SINUS["positions"], d_model: int = theory.SINUS["d_model"],
                  dims: str = ", ".join(map(str, theory.SINUS["dims"])), model: str = "", rope: bool = True,
                  request: gr.Request = None) -> dict:
    """The sinusoidal position table with chosen dimensions, and (rope) the model's rotary angles."""
    out = {"sinusoidal": sinusoidal(SinusoidalRequest(positions, d_model, theory.parse_indices(dims, "dims"))).to_dict(),
           "rope": None}
    if rope:
        out["rope"] = rope_encoding(RopeRequest(model=h.pick(model, request)[0], positions=positions)).to_dict()
    return out


@h.friendly
def api_lstm_train(corpus: str = "", steps: int = theory.LSTM["steps"], hidden_size: int = theory.LSTM["hidden_size"],
                   embed_size: int = theory.LSTM["embed_size"], learning_rate: float = theory.LSTM["learning_rate"],
                   max_seconds: float = theory.LSTM["max_seconds"], seed: int = theory.LSTM["seed"],
                   request: gr.Request = None) -> dict:
    """Train a word-level LSTM LM on a corpus (empty = the bundled one); its model_id is for lstm_compare."""
    req = LstmTrainRequest(corpus if corpus.strip() else bundled_corpus(), steps=steps, hidden_size=hidden_size,
                           embed_size=embed_size, learning_rate=learning_rate, max_seconds=max_seconds, seed=seed)
    return train_lstm(req, owner=h.owner_of(request)).to_dict()


@h.friendly
def api_lstm_compare(text: str, model_id: str, k: float = theory.SBS["k"], model: str = "",
                     request: gr.Request = None) -> dict:
    """A text under the bigram (on the LSTM's corpus), your trained LSTM and a causal LM, with the LSTM's gates."""
    lstm = get_lstm(model_id, h.owner_of(request))
    model, adapter = h.pick(model, request)
    text = h.need(text, request)
    res = side_by_side(SideBySideRequest(text, k=k, model=model, adapter=adapter), lstm=lstm)
    return dict(res.to_dict(), gates=[[g.token, g.forget, g.input, g.output] for g in res.gates])


@h.friendly
def api_evaluate(task: str = EVAL["task"], data: str = "", models: str = ", ".join(EVAL["models"]),
                 limit: int | None = EVAL["limit"], columns: str = "", source: str = "", target: str = "",
                 request: gr.Request = None) -> dict:
    """Score up to 4 models (comma-separated: default, built-ins, adapters, Hub ids) on the same rows.

    data: a JSONL/CSV file on the server or a Hub dataset id (empty = the bundled set); columns: "old=new, ...";
    source/target: translation languages of rows without `source_lang`/`target_lang` (empty = translate's).
    """
    req = EvalRequest(task, h.api_data(data), models=models, limit=limit, columns=parse_columns(columns),
                      source=source or None, target=target or None)
    return h.compare_for(req, request).to_dict()


def _finetune(task: str, data: str, sample: str, columns: str, **settings) -> FinetuneRequest:
    if "base" in settings:
        settings["base"] = h.visitor_model(settings["base"])
    return FinetuneRequest(task=task, data=h.api_data(data), sample=sample or None, columns=parse_columns(columns), **settings)


def _plan_dict(planned) -> dict:
    """A plan as the API shows it: on a shared Space the server's folders stay out of it."""
    out = planned.to_dict()
    if get_settings().demo_mode:
        out["output_dir"] = ""
        out.get("config", {}).pop("output_dir", None)
    return out


@h.friendly
def api_finetune_check(task: str = FT["task"], data: str = "", sample: str = "", columns: str = "") -> dict:
    """Read and check the training data (a server-side file, a Hub dataset id or a bundled sample); starts nothing."""
    return _plan_dict(plan(_finetune(task, data, sample, columns), settle=False))


@h.friendly
def api_finetune_estimate(task: str = FT["task"], data: str = "", sample: str = "", columns: str = "",
                          base: str = "", quantize: str = "", lora_r: int | None = FT["lora_r"], source: str = "",
                          target: str = "") -> dict:
    """Memory and time per epoch of the run, measured with two real LoRA steps (empty/None: the task's default)."""
    req = _finetune(task, data, sample, columns, base=base or None, quantize=quantize or None, lora_r=lora_r,
                    source=source or None, target=target or None)
    return estimate_plan(plan(req)).to_dict()


@h.friendly
def api_finetune_start(task: str = FT["task"], data: str = "", sample: str = "", columns: str = "", base: str = "",
                       epochs: float | None = FT["epochs"], learning_rate: float | None = FT["learning_rate"],
                       lora_r: int | None = FT["lora_r"], quantize: str = "", max_steps: int | None = FT["max_steps"],
                       seed: int | None = FT["seed"], name: str = "", source: str = "", target: str = "",
                       request: gr.Request = None) -> dict:
    """Start a LoRA fine-tuning run in the app's training slot (one at a time); poll /finetune_status.

    Settings left empty/None take the task's defaults; name: the adapter's name (default TASK-adapter);
    source/target: a translation run's languages (default en -> fr).
    """
    req = _finetune(task, data, sample, columns, base=base or None, epochs=epochs,
                    learning_rate=learning_rate, lora_r=lora_r, quantize=quantize or None, max_steps=max_steps,
                    seed=seed, output=h.adapter_name(name), source=source or None, target=target or None)
    planned, status = h.start_job(req, request)
    return dict(_plan_dict(planned), state=status.state, message=status.message,
                notes=planned.data.notes + status.notes)


@h.friendly
def api_finetune_status(request: gr.Request = None) -> dict:
    """Your training job: state, step, losses so far and, when finished, the base-vs-fine-tuned comparison."""
    from lmdemo.train.worker import JOBS

    st = JOBS.poll(h.owner_of(request))
    return h.job_dict(st, busy=JOBS.busy() and not st.running)


@h.friendly
def api_finetune_cancel(request: gr.Request = None) -> dict:
    """Stop your training job after its current step (the adapter trained so far is saved)."""
    from lmdemo.train.worker import JOBS

    return h.job_dict(JOBS.cancel(h.owner_of(request)))


@h.friendly
def api_models() -> list[dict]:
    """The built-in models and their state here (ready, fetched or missing)."""
    return h.models_list()


@h.friendly
def api_models_prepare() -> list[dict]:
    """Fetch and convert every built-in model (once; later calls find them ready)."""
    store.prepare()
    return h.models_list()


@h.friendly
def api_adapters(request: gr.Request = None) -> list[dict]:
    """Your saved adapters (newest first), then the shared ones (bundled; "owned": false)."""
    return h.adapters_list(request)


@h.friendly
def api_adapters_remove(name: str, request: gr.Request = None) -> list[dict]:
    """Delete one of your adapters by name (shared and bundled adapters stay); returns the adapters left."""
    h.remove_named(name, request)
    return h.adapters_list(request)


@h.friendly
def api_adapters_merge(name: str, request: gr.Request = None) -> dict:
    """Merge one of your adapters into its base model; the full model folder works in every model box."""
    return {"output": str(h.merge_into_folder(h.need(name, request), request))}


@h.friendly
def api_share_dry_run(adapter: str, repo_id: str, request: gr.Request = None) -> dict:
    """Build the exact folder a push of one of your adapters would upload, with its model card."""
    result, card = h.dry_run(h.need(adapter, request), h.need(repo_id, request), request)
    out = dict(result.to_dict(), card=card)
    if get_settings().demo_mode:
        out["folder"] = ""
    return out


@h.friendly
def api_share_push(adapter: str, repo_id: str, private: bool = False, token: str = "",
                   request: gr.Request = None) -> dict:
    """Push one of your adapters to the Hub (token: a write token; empty = HF_TOKEN or the stored login,
    never on a shared Space)."""
    return h.push_adapter(h.need(adapter, request), h.need(repo_id, request), private, token.strip(),
                          request).to_dict()


API = {  # endpoint -> (function, concurrency group): one model-bound job at a time per group
    "generate": (api_generate, "causal-lm"), "sentiment": (api_sentiment, "encoder"),
    "sentiment_batch": (api_sentiment_batch, "encoder"), "summarize": (api_summarize, "causal-lm"),
    "translate": (api_translate, "causal-lm"), "perplexity": (api_perplexity, "causal-lm"),
    "next_tokens": (api_next_tokens, "causal-lm"), "bigram": (api_bigram, "causal-lm"),
    "attention": (api_attention, "causal-lm"), "positions": (api_positions, "causal-lm"),
    "lstm_train": (api_lstm_train, "lstm"), "lstm_compare": (api_lstm_compare, "causal-lm"),
    "evaluate": (api_evaluate, "causal-lm"), "finetune_check": (api_finetune_check, None),
    "finetune_estimate": (api_finetune_estimate, "training"), "finetune_start": (api_finetune_start, None),
    "finetune_status": (api_finetune_status, None), "finetune_cancel": (api_finetune_cancel, None),
    "models": (api_models, None), "models_prepare": (api_models_prepare, "training"),
    "adapters": (api_adapters, None), "adapters_remove": (api_adapters_remove, None),
    "adapters_merge": (api_adapters_merge, "training"), "share_dry_run": (api_share_dry_run, "hub"),
    "share_push": (api_share_push, "hub"),
}


def api_endpoints() -> None:
    """Register the named endpoints (inside the page's Blocks)."""
    for name, (fn, group) in API.items():
        gr.api(h.in_slot(fn) if group == "causal-lm" else fn, api_name=name, concurrency_id=group)


def build() -> gr.Blocks:
    """The whole page."""
    with gr.Blocks(title="lmdemo", analytics_enabled=False, delete_cache=limits.DELETE_CACHE) as demo:
        gr.Markdown(i("title"))
        gr.Markdown(i("intro"))
        if get_settings().demo_mode:
            gr.Markdown(i("demo_note"), elem_id="demo-note")
            if os.environ.get("SPACE_ID"):  # set by Spaces: link straight to the duplicate dialog
                gr.Markdown(f"[Duplicate this Space](https://huggingface.co/spaces/{os.environ['SPACE_ID']}?duplicate=true)")
        pickers = []
        with gr.Tabs():
            for key, tab in (("tab_generate", generate_tab), ("tab_sentiment", sentiment_tab),
                             ("tab_summarize", summarise_tab), ("tab_translate", translate_tab),
                             ("tab_lab", lab_tab), ("tab_evaluate", evaluate_tab), ("tab_finetune", finetune_tab),
                             ("tab_models", models_tab)):
                with gr.Tab(i(key)):
                    picker = tab()
                    if picker:
                        pickers.append(picker)

        def refresh_pickers(request: gr.Request):
            """The visitor's fine-tuned adapters appear in the model pickers of the jobs they fit, on every load."""
            return [gr.Dropdown(choices=h.picker_choices(kind, defaults, request)) for _, kind, defaults in pickers]

        demo.load(refresh_pickers, None, [p for p, _, _ in pickers], queue=False, api_visibility="private")
        watch_adapters([p for p, _, _ in pickers], refresh_pickers)
        api_endpoints()
    # One model-bound job at a time per model family: a 2-core machine gains nothing from more.
    demo.queue(max_size=DEMO_LIMITS.queue_size if get_settings().demo_mode else slots.QUEUE_SIZE,
               default_concurrency_limit=1)
    return demo


# gradio's line and bar plots fit their SVG to the block's height below the label, so the colour legend at the
# bottom falls outside the block and is clipped: let it show, with room below.
CSS = ".block:has(.vega-embed) { overflow: visible !important; margin-bottom: 28px; }"


def launch(port: int | None = None, host: str | None = None, block: bool = True, warm: bool = True) -> gr.Blocks:
    """Start the app (prevent_thread_lock when block is False, for tests)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if get_settings().demo_mode and os.environ.get("HF_TOKEN"):
        log.info("demo mode: HF_TOKEN stays the host's; visitors push with their own token and read the Hub anonymously")
    if warm:
        warmup.start()
    demo = build()
    demo.launch(server_name=host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                i18n=I18N, max_file_size=MAX_FILE_SIZE, prevent_thread_lock=not block, show_error=True, css=CSS,
                app_kwargs={"middleware": [Middleware(limits.BodyLimit), Middleware(limits.VisitorCookie)],
                            "routes": openai_api.routes(), "lifespan": _lifespan})
    return demo


@contextlib.asynccontextmanager
async def _lifespan(app):
    """The training worker ends with the app (it also watches for the app's death itself)."""
    yield
    from lmdemo.train.worker import JOBS

    JOBS.shutdown()
