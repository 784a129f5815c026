"""The Gradio app: one function per tab, each wiring components to webui.handlers."""

from __future__ import annotations

import logging
import os

import gradio as gr

from lmdemo.serve import warmup
from lmdemo.models.adapters import list_adapters
from lmdemo.config import DEMO_LIMITS, get_settings
from lmdemo.models.registry import DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL
from lmdemo.jobs.translation import LANGUAGES

from . import handlers as h
from .i18n import I18N

log = logging.getLogger("lmdemo.webui")
i = I18N  # i("key") marks a string for translation in the browser

MAX_FILE_SIZE = "10mb"
QUEUE_SIZE = 64
CAUSAL_CHOICES = [DEFAULT_CHAT_MODEL, DEFAULT_COMPLETION_MODEL]


def _examples(rows: list[list], inputs: list) -> gr.Examples:
    """Examples shown as labelled buttons (the first field, shortened): a table would show raw i18n keys as headers."""
    labels = [str(r[0]) if len(str(r[0])) <= 60 else str(r[0])[:57] + "…" for r in rows]
    return gr.Examples(rows, inputs=inputs, example_labels=labels, label=i("examples"))


def _model_box(default: str, choices: list[str]) -> gr.Dropdown:
    return gr.Dropdown(choices=choices, value=default, allow_custom_value=True, label=i("model"), scale=2)


def generate_tab() -> tuple[gr.Dropdown, str, list[str]]:
    stop = gr.State(h.StopEvent())  # one per browser session
    with gr.Row():
        mode = gr.Radio([(i("mode_chat"), "chat"), (i("mode_completion"), "completion")], value="chat",
                        label=i("mode"), scale=2)
        model = _model_box(DEFAULT_CHAT_MODEL, CAUSAL_CHOICES)
        quantize = gr.Dropdown(["none", "8bit", "4bit"], value="none", label=i("quantize"), scale=1)
    chatbot = gr.Chatbot(label=i("chat"), height=340)
    prompt = gr.Textbox(label=i("prompt"), lines=2, placeholder="Ask anything…")
    with gr.Row():
        send = gr.Button(i("send"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
        clear = gr.Button(i("clear"))
    stats = gr.Markdown(label=i("stats"))
    with gr.Accordion(i("settings"), open=False):
        with gr.Row():
            max_new = gr.Slider(1, 1024, value=256, step=1, label=i("max_new_tokens"))
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label=i("temperature"))
            top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label=i("top_p"))
        with gr.Row():
            top_k = gr.Slider(0, 200, value=50, step=1, label=i("top_k"))
            rep = gr.Slider(0.8, 2, value=1.1, step=0.05, label=i("repetition_penalty"))
            seed = gr.Number(value=0, precision=0, label=i("seed"))
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
            h.chat_reply, reply_inputs, [chatbot, stats], concurrency_id="causal-lm", api_name="ui_chat",
            api_visibility="undocumented")
        events.append(ev)
    stop_btn.click(h.stop_generation, stop, None, queue=False, cancels=events, api_name="ui_stop_chat",
                   api_visibility="undocumented")
    clear.click(lambda: ([], ""), None, [chatbot, stats], queue=False, api_name="ui_stop_generation", api_visibility="private")
    return model, "sft", CAUSAL_CHOICES


def sentiment_tab() -> tuple[gr.Dropdown, str, list[str]]:
    model = gr.Dropdown([h.BUNDLED_SENTIMENT], value=h.BUNDLED_SENTIMENT, allow_custom_value=True,
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
            upload = gr.File(label=i("batch_file"), file_types=[".txt", ".csv", ".tsv"], type="filepath")
        run_all = gr.Button(i("classify_all"))
        table = gr.Dataframe(headers=["text", "label", "score"], label=i("results"), wrap=True)
        download = gr.DownloadButton(i("download"), visible=False)
    run_all.click(h.sentiment_batch, [lines, upload, model], [table, download], concurrency_id="encoder",
                  api_name="ui_sentiment_batch", api_visibility="private")
    return model, "classification", [h.BUNDLED_SENTIMENT]


def summarise_tab() -> tuple[gr.Dropdown, str, list[str]]:
    stop = gr.State(h.StopEvent())
    model = _model_box(DEFAULT_CHAT_MODEL, [DEFAULT_CHAT_MODEL])
    text_in = gr.Textbox(label=i("summary_text"), lines=8)
    with gr.Row():
        unit = gr.Radio([(i("sentences"), "sentences"), (i("words"), "words")], value="sentences",
                        label=i("length_unit"))
        length = gr.Slider(1, 10, value=1, step=1, label=i("length"))
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
    unit.change(lambda u: gr.Slider(1, 10, value=2, step=1) if u == "sentences" else gr.Slider(5, 200, value=40, step=5),
                unit, length, queue=False, api_visibility="private")
    ev = run.click(h.summarise, [text_in, unit, length, model, stop], [summary, lengths], concurrency_id="causal-lm",
                   api_name="ui_summarise", api_visibility="private")
    stop_btn.click(h.stop_generation, stop, None, queue=False, cancels=[ev], api_name="ui_stop_generation", api_visibility="private")
    return model, "sft", [DEFAULT_CHAT_MODEL]


def translate_tab() -> tuple[gr.Dropdown, str, list[str]]:
    stop = gr.State(h.StopEvent())
    langs = [(name, code) for code, name in LANGUAGES.items()]
    with gr.Row():
        source = gr.Dropdown(langs, value="en", label=i("source_lang"))
        swap = gr.Button(i("swap"), scale=0, min_width=90)
        target = gr.Dropdown(langs, value="fr", label=i("target_lang"))
        model = _model_box(DEFAULT_COMPLETION_MODEL, [DEFAULT_COMPLETION_MODEL])
    with gr.Row():
        text_in = gr.Textbox(label=i("source_text"), lines=5)
        out = gr.Textbox(label=i("translation"), lines=5)
    with gr.Row():
        run = gr.Button(i("translate"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
    _examples([["I would like a cup of coffee, please.", "en", "fr"],
                 ["The train to Berlin leaves at eight o'clock. Please don't be late.", "en", "de"],
                 ["¿Dónde está el museo más cercano?", "es", "en"],
                 ["我们明天早上去爬山。", "zh", "en"]], inputs=[text_in, source, target])
    ev = run.click(h.translate, [text_in, source, target, model, stop], out, concurrency_id="causal-lm",
                   api_name="ui_translate", api_visibility="private")
    stop_btn.click(h.stop_generation, stop, None, queue=False, cancels=[ev], api_name="ui_stop_generation", api_visibility="private")
    swap.click(h.swap_languages, [source, target, text_in, out], [source, target, text_in, out], queue=False,
               api_name="ui_swap_languages", api_visibility="private")
    return model, "sft", [DEFAULT_COMPLETION_MODEL]


def lab_tab() -> tuple[gr.Dropdown, str, list[str]]:
    model = _model_box(DEFAULT_CHAT_MODEL, CAUSAL_CHOICES)
    with gr.Group():
        gr.Markdown(i("lab_score"))
        text_in = gr.Textbox(label=i("text"), value="The cat sat on the mat.", lines=2)
        run = gr.Button(i("score"), variant="primary")
        strip = gr.HighlightedText(label=i("token_strip"), show_legend=False, combine_adjacent=False)
        summary = gr.Markdown()
        with gr.Accordion(i("token_table"), open=False):
            table = gr.Dataframe(headers=["token", "log p", "p"])
    run.click(h.lab_score, [text_in, model], [strip, summary, table], concurrency_id="causal-lm",
              api_name="ui_lab_score", api_visibility="private")
    with gr.Group():
        gr.Markdown(i("lab_next"))
        with gr.Row():
            prefix = gr.Textbox(label=i("prefix"), value="The capital of France is", scale=3)
            k = gr.Slider(1, 30, value=10, step=1, label=i("top_k_show"))
        run_next = gr.Button(i("predict"))
        plot = gr.BarPlot(x="token", y="probability", label=i("next_plot"), sort="-y", height=300)
    run_next.click(h.lab_next, [prefix, k, model], plot, concurrency_id="causal-lm", api_name="ui_lab_next", api_visibility="private")
    with gr.Group():
        gr.Markdown(i("lab_bigram"))
        corpus = gr.Textbox(label=i("corpus"), lines=4, value=(
            "the cat sat on the mat.\nthe dog sat on the rug.\na cat and a dog played on the mat.\n"
            "the cat slept on the rug."))
        smoothing = gr.Number(value=1.0, label=i("smoothing"))
        run_cmp = gr.Button(i("compare"))
        comparison = gr.Markdown()
    run_cmp.click(h.lab_bigram, [text_in, corpus, smoothing, model], comparison, concurrency_id="causal-lm",
                  api_name="ui_lab_bigram", api_visibility="private")
    return model, "sft", CAUSAL_CHOICES


def evaluate_tab() -> None:
    with gr.Row():
        task = gr.Dropdown(["sentiment", "classification", "translation", "summarisation", "generation"],
                           value="sentiment", label=i("task"))
        limit = gr.Slider(1, 400, value=50, step=1, label=i("limit"))
    with gr.Row():
        models = gr.Textbox(value="default", label=i("eval_models"), scale=2)
        upload = gr.File(label=i("eval_file"), file_types=[".jsonl", ".csv", ".tsv"], type="filepath")
    with gr.Row():
        run = gr.Button(i("evaluate"), variant="primary")
        stop_btn = gr.Button(i("stop"), variant="stop")
    with gr.Row():
        table = gr.Dataframe(label=i("metrics"), headers=["model", "n", "metric"], interactive=False)
        chart = gr.BarPlot(x="bar", y="value", color="model", label=i("metrics"), height=280)
    examples = gr.Dataframe(label=i("per_example"), headers=["input", "reference", "prediction"], wrap=True,
                            interactive=False)
    download = gr.DownloadButton(i("download_json"), visible=False)
    ev = run.click(h.run_evaluation, [task, upload, models, limit], [table, chart, examples, download],
                   concurrency_id="causal-lm", api_name="ui_evaluate", api_visibility="private")
    stop_btn.click(None, None, None, cancels=[ev], api_name="ui_stop_eval", api_visibility="private")


def finetune_tab() -> None:
    from lmdemo.data.tabular import SAMPLES

    with gr.Row():
        task = gr.Radio([("classification", "classification"), ("instruction / SFT", "sft")], value="classification",
                        label=i("task"))
        sample = gr.Dropdown(list(SAMPLES), value="topics (4 classes)", label=i("sample"))
        upload = gr.File(label=i("train_file"), file_types=[".csv", ".jsonl", ".json", ".parquet", ".tsv"],
                         type="filepath", elem_id="finetune-upload")
    with gr.Row():
        first_col = gr.Dropdown([], value=None, allow_custom_value=True, label=i("first_col"))
        second_col = gr.Dropdown([], value=None, allow_custom_value=True, label=i("second_col"))
        check = gr.Button(i("check_data"))
    data_summary = gr.Markdown()
    preview = gr.Dataframe(label=i("preview"), headers=["text", "label"], interactive=False, wrap=True)
    with gr.Accordion(i("train_settings"), open=True):
        with gr.Row():
            base = gr.Dropdown(["all-minilm-l6-v2", "smollm2-135m-instruct", "gemma-3-270m"], value="all-minilm-l6-v2",
                               allow_custom_value=True, label=i("model"))
            epochs = gr.Slider(1, 20, value=6, step=1, label=i("epochs"))
            lr = gr.Number(value=1e-3, label=i("learning_rate"))
            lora_r = gr.Slider(2, 64, value=16, step=2, label=i("lora_r"))
            quantize = gr.Dropdown(["none", "4bit"], value="none", label=i("quantize"))
            name = gr.Textbox(value="topics", label=i("adapter_name"))
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
                                    interactive=False, wrap=True)
    with gr.Accordion(i("adapters"), open=False):
        adapters = gr.Dataframe(headers=["name", "task", "base", "metrics"], interactive=False)
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
            share_pick = gr.Dropdown(choices=[a.name for a in list_adapters()], value=None, allow_custom_value=True,
                                     label=i("adapter"))
            share_refresh = gr.Button(i("refresh"), scale=0)
            repo_id = gr.Textbox(label=i("repo_id"), placeholder="your-name/my-adapter")
            private = gr.Checkbox(label=i("private"), value=False)
        token = gr.Textbox(label=i("hf_token"), type="password", max_lines=1)
        with gr.Row():
            dry = gr.Button(i("dry_run"))
            push = gr.Button(i("push"), variant="primary")
        share_md = gr.Markdown()
        card = gr.Code(language="markdown", label="README.md", interactive=False)

    task.change(lambda t: ("all-minilm-l6-v2", 6, 1e-3) if t == "classification" else ("smollm2-135m-instruct", 2, 2e-4),
                task, [base, epochs, lr], queue=False, api_visibility="private")
    data_inputs = [task, sample, upload, first_col, second_col]
    for trigger in (check.click, upload.upload, sample.change):
        trigger(h.check_training_data, data_inputs, [preview, data_summary, first_col, second_col],
                api_name="ui_check_data", api_visibility="private")
    estimate_btn.click(h.estimate_training, data_inputs + [base, quantize, lora_r], estimate_md,
                       concurrency_id="training", api_name="ui_estimate", api_visibility="private")
    start.click(h.start_training, data_inputs + [base, epochs, lr, lora_r, quantize, name], None,
                api_name="ui_start_training", api_visibility="private")
    cancel.click(h.cancel_training, None, None, queue=False, api_name="ui_cancel_training", api_visibility="private")
    timer = gr.Timer(1.0)
    timer.tick(h.training_status, None, [status, loss_plot, val_plot, compare_table, compare_examples], queue=False,
               api_visibility="private", show_progress="hidden")
    # Filled on every page load by a private event (a callable value would be published as an API endpoint).
    gr.on(None, h.adapters_table, None, adapters, queue=False, api_visibility="private")
    remove.click(h.remove_adapter, adapter_name, adapters, api_name="ui_remove_adapter", api_visibility="private")
    merge.click(h.merge_adapter, adapter_name, merge_md, concurrency_id="training", api_name="ui_merge_adapter",
                api_visibility="private")
    share_refresh.click(lambda: gr.Dropdown(choices=[a.name for a in list_adapters()]), None, share_pick,
                        queue=False, api_visibility="private")
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

def api_endpoints() -> None:
    """Plain, typed endpoints for scripts; documented in the README's API section."""

    @h.friendly
    def generate(prompt: str, mode: str = "chat", model: str = "", max_new_tokens: int = 128,
                 temperature: float = 0.7, top_p: float = 0.9, top_k: int = 50, repetition_penalty: float = 1.1,
                 seed: int = 0, request: gr.Request = None) -> dict:
        """Generate a chat reply or a completion; returns text, tokens and tokens_per_second."""
        from lmdemo.jobs.generation import GenerationRequest, generate as run
        from lmdemo.engine.streaming import GenerationParams

        params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                                  repetition_penalty=repetition_penalty, seed=seed)
        text, stats = run(GenerationRequest(h._need(prompt, request), mode=mode, model=h._model(model), params=params))
        return {"text": text, "tokens": stats.tokens, "tokens_per_second": round(stats.tokens_per_second, 2)}

    @h.friendly
    def sentiment(text: str, model: str = "", request: gr.Request = None) -> dict:
        """Label and score of one text."""
        from lmdemo.jobs.sentiment import classify

        r = classify([h._need(text, request)], **h._sentiment_source(model))[0]
        return {"text": r.text, "label": r.label, "score": r.score}

    @h.friendly
    def sentiment_batch(texts: list[str], model: str = "", request: gr.Request = None) -> list[dict]:
        """Label and score of each text."""
        from lmdemo.jobs.sentiment import classify

        return [{"text": r.text, "label": r.label, "score": r.score}
                for r in classify(list(texts or []), **h._sentiment_source(model))]

    @h.friendly
    def summarize(text: str, length: int = 2, unit: str = "sentences", model: str = "",
                  request: gr.Request = None) -> dict:
        """Summary of a text, with lengths."""
        from lmdemo.jobs.summarization import SummaryRequest, summarize as run

        r = run(SummaryRequest(h._need(text, request), length=length, unit=unit, model=h._model(model)))
        return {"summary": r.summary, "input_words": r.input_words, "summary_words": r.summary_words,
                "notes": r.notes}

    @h.friendly
    def translate(text: str, source: str = "en", target: str = "fr", model: str = "",
                  request: gr.Request = None) -> dict:
        """Translation of a text between en, fr, de, es and zh."""
        from lmdemo.jobs.translation import TranslationRequest, translate as run

        return {"source": text, "translation": run(TranslationRequest(h._need(text, request), source, target,
                                                                      model=h._model(model)))}

    @h.friendly
    def perplexity(text: str, model: str = "", request: gr.Request = None) -> dict:
        """Per-token log-probabilities and perplexity under a causal LM."""
        from lmdemo.jobs.lmlab import score_text

        r = score_text(h._need(text, request), model=h._model(model) or DEFAULT_CHAT_MODEL)
        return {"perplexity": r.perplexity, "total_logprob": r.total_logprob,
                "tokens": [[t.token, t.logprob] for t in r.tokens], "note": r.note}

    @h.friendly
    def next_tokens(prefix: str, k: int = 10, model: str = "", request: gr.Request = None) -> list:
        """Top-k next tokens with probabilities."""
        from lmdemo.jobs.lmlab import next_token_distribution

        return [[t, p] for t, p in next_token_distribution(h._need(prefix, request), k=k,
                                                            model=h._model(model) or DEFAULT_CHAT_MODEL)]

    @h.friendly
    def bigram(text: str, corpus: str, k: float = 1.0, model: str = "", request: gr.Request = None) -> dict:
        """Perplexity of a text under the neural LM and under a bigram model fitted on the corpus."""
        from lmdemo.jobs.lmlab import compare_perplexities

        return compare_perplexities(h._need(text, request), h._need(corpus, request), k=k,
                                    model=h._model(model) or DEFAULT_CHAT_MODEL)

    for fn, cid in ((generate, "causal-lm"), (sentiment, "encoder"), (sentiment_batch, "encoder"),
                    (summarize, "causal-lm"), (translate, "causal-lm"), (perplexity, "causal-lm"),
                    (next_tokens, "causal-lm"), (bigram, "causal-lm")):
        gr.api(fn, api_name=fn.__name__, concurrency_id=cid)


def build() -> gr.Blocks:
    """The whole page."""
    with gr.Blocks(title="lmdemo", analytics_enabled=False) as demo:
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

        def refresh_pickers():
            """Fine-tuned adapters appear in the model pickers of the jobs they fit, on every page load."""
            return [gr.Dropdown(choices=h.picker_choices(kind, defaults)) for _, kind, defaults in pickers]

        demo.load(refresh_pickers, None, [p for p, _, _ in pickers], queue=False, api_visibility="private")
        api_endpoints()
    # One model-bound job at a time per model family: a 2-core machine gains nothing from more.
    demo.queue(max_size=DEMO_LIMITS.queue_size if get_settings().demo_mode else QUEUE_SIZE,
               default_concurrency_limit=1)
    return demo


def launch(port: int | None = None, host: str | None = None, block: bool = True, warm: bool = True) -> gr.Blocks:
    """Start the app (prevent_thread_lock when block is False, for tests)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if warm:
        warmup.start()
    demo = build()
    demo.launch(server_name=host or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=port or int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                i18n=I18N, max_file_size=MAX_FILE_SIZE, prevent_thread_lock=not block, show_error=True)
    return demo
