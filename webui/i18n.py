"""English and Chinese UI strings (gr.I18n picks by the browser's language) and localised errors."""

from __future__ import annotations

import re

import gradio as gr

EN = {
    "title": "# lmdemo — small language models, from theory to practice",
    "intro": "Everything below runs offline on small models that PyPI packages carry. Pick a tab, click an example, then press the orange button.",
    "examples": "Examples",
    "tab_generate": "Generate", "tab_sentiment": "Sentiment", "tab_summarize": "Summarise",
    "tab_translate": "Translate", "tab_lab": "LM lab", "tab_models": "Models",
    "model": "Model (built-in, local folder, Hub id or engine)", "adapter": "Adapter", "quantize": "Quantisation",
    "mode": "Mode", "mode_chat": "chat (SmolLM2-Instruct)", "mode_completion": "completion (Gemma-3 base)",
    "chat": "Conversation", "prompt": "Your message or text to continue", "send": "Send", "stop": "Stop",
    "clear": "Clear", "settings": "Sampling settings", "max_new_tokens": "Max new tokens",
    "temperature": "Temperature (0 = greedy)", "top_p": "Top-p", "top_k": "Top-k (0 = off)",
    "repetition_penalty": "Repetition penalty", "seed": "Seed (same seed + settings = same text)",
    "stats": "Tokens and speed",
    "text": "Text", "classify": "Classify", "sentiment_label": "Sentiment",
    "batch": "Many texts", "batch_text": "One text per line", "batch_file": "…or upload a .txt / .csv file",
    "classify_all": "Classify all", "results": "Results", "download": "Download CSV",
    "summary_text": "Text to summarise", "length_unit": "Length in", "sentences": "sentences", "words": "words",
    "length": "Length", "summarise": "Summarise", "summary": "Summary", "lengths": "Lengths",
    "processes": "Processes (one per GPU)",
    "source_lang": "From", "target_lang": "To", "swap": "⇄ Swap", "translate": "Translate",
    "translation": "Translation", "source_text": "Text to translate",
    "lab_score": "### Chain rule: p(text) = Π p(token | tokens before)", "score": "Score text",
    "token_strip": "Each token coloured by its probability (darker = more likely)",
    "lab_summary": "Totals", "token_table": "Per-token log-probabilities",
    "lab_next": "### Next-token distribution", "prefix": "Prefix", "top_k_show": "How many tokens",
    "predict": "Predict next token", "next_plot": "Top next tokens",
    "lab_bigram": "### Compare with a bigram model (add-k smoothing)", "corpus": "Corpus to fit the bigram model on (one sentence per line)",
    "smoothing": "k (add-k smoothing)", "compare": "Compare perplexities", "comparison": "Perplexities",
    "lab_probs": "Probabilities", "lab_attention": "Attention", "lab_positions": "Positions",
    "lab_lstm": "LSTM vs bigram vs Transformer",
    "attn_intro": "### Scaled dot-product attention, on the loaded model\n"
                  "$$\\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}\\left(\\frac{QK^\\top}{\\sqrt{d_k}}\\right) V$$\n"
                  "Row *i* of the map is token *i*'s softmax: how much of each token's value vector it mixes in. "
                  "Every row sums to 1. A causal LM's token sees only itself and earlier tokens; an encoder's sees "
                  "all of them. Shade grows with the square root of the weight, so small weights stay visible; "
                  "hover a cell for its value.",
    "attn_text": "Text (the first 64 tokens are shown)", "layer": "Layer", "head": "Head",
    "show_attention": "Show attention", "attn_reading": "Where each token looks",
    "pe_intro": "### Sinusoidal positional encoding (the original Transformer)\n"
                "$$PE_{(pos,\\,2i)} = \\sin\\left(\\frac{pos}{10000^{2i/d_{model}}}\\right) \\qquad "
                "PE_{(pos,\\,2i+1)} = \\cos\\left(\\frac{pos}{10000^{2i/d_{model}}}\\right)$$\n"
                "Low dimensions turn fast, high ones slowly: together they give each position a unique pattern.",
    "pe_positions": "Positions", "d_model": "d_model (even)", "pe_dims": "Dimensions to draw (comma-separated)",
    "plot_positions": "Plot", "pe_table": "The whole table", "pe_curves": "Chosen dimensions over positions",
    "rope_intro": "### What the loaded model uses instead: rotary encoding (RoPE)\n"
                  "$$\\theta_i = \\mathrm{base}^{-2i/d}, \\qquad (q_{2i}, q_{2i+1}) \\mapsto "
                  "R(pos \\cdot \\theta_i)\\,(q_{2i}, q_{2i+1})$$\n"
                  "Each pair of query and key dimensions is rotated by an angle that grows with the position.",
    "rope_curves": "cos(rotation angle) over positions, per frequency pair",
    "lstm_intro": "### An LSTM language model, trained here, beside the bigram and the Transformer\n"
                  "$$f_t = \\sigma(W_f x_t + U_f h_{t-1} + b_f) \\quad i_t = \\sigma(W_i x_t + U_i h_{t-1} + b_i) "
                  "\\quad o_t = \\sigma(W_o x_t + U_o h_{t-1} + b_o)$$\n"
                  "$$\\tilde c_t = \\tanh(W_c x_t + U_c h_{t-1} + b_c) \\qquad c_t = f_t \\odot c_{t-1} + "
                  "i_t \\odot \\tilde c_t \\qquad h_t = o_t \\odot \\tanh(c_t)$$\n"
                  "A word-level `nn.LSTM` learns the corpus below; the bigram is fitted on the same corpus. Then "
                  "one text is scored by all three.",
    "lstm_corpus": "Corpus (one sentence per line; the bundled one has verbs that agree with a subject a few words back)",
    "lstm_steps": "Training steps", "lstm_hidden": "LSTM units", "train_lstm": "Train the LSTM",
    "lstm_loss": "LSTM training loss (nats per word)", "lstm_text": "Text to score",
    "compare3": "Score with all three", "strip_bigram": "Bigram", "strip_lstm": "LSTM",
    "strip_transformer": "Transformer", "gates_plot": "Gate activations along the text (mean over the LSTM's units)",
    "gates_table": "Gates per word",
    "models_intro": "Built-in models are fetched from PyPI once and converted to safetensors. Any Hub id or local folder can be typed into a model box.",
    "prepare": "Fetch / convert all", "refresh": "Refresh",
    "err_empty": "Please type some text first.",
    "tab_evaluate": "Evaluate", "task": "Task", "limit": "Examples (first N)",
    "eval_models": "Models to compare (comma-separated: default, built-in names, adapter folders, Hub ids)",
    "eval_file": "Eval set (empty = the bundled one; JSONL/CSV with the task's fields)", "evaluate": "Evaluate",
    "metrics": "Metrics", "per_example": "Per example (✗ = wrong label)", "download_json": "Download results JSON",
    "tab_finetune": "Fine-tune", "sample": "Sample data set", "train_file": "…or upload CSV / JSONL / Parquet",
    "first_col": "Text / prompt / source column", "second_col": "Label / response / target column", "check_data": "Check data",
    "preview": "First rows", "train_settings": "Training settings", "epochs": "Epochs", "learning_rate": "Learning rate",
    "max_steps": "Max steps (0: by epochs)", "ask_anything": "Ask anything…",
    "q_none": "none", "task_sentiment": "sentiment", "task_classification": "classification",
    "task_translation": "translation", "task_summarisation": "summarisation", "task_generation": "generation",
    "ft_classification": "classification", "ft_sft": "instruction / SFT", "ft_translation": "translation (seq2seq)",
    "ft_summarisation": "summarisation (seq2seq)", "bundled_sentiment": "sentiment (bundled MiniLM + LoRA)",
    "default_summariser": "default (1 sentence: bundled Gemma 270M + news LoRA; longer: SmolLM2)",
    "sample_topics (4 classes)": "topics (4 classes)", "sample_sentiment (2 classes)": "sentiment (2 classes)",
    "sample_instructions (short answers)": "instructions (short answers)",
    "lora_r": "LoRA rank r", "adapter_name": "Adapter name", "estimate": "Estimate memory and time",
    "start": "Start training", "cancel": "Cancel", "loss": "Training loss", "val_loss": "Validation loss",
    "past_runs": "Past runs", "past_run": "Run (its adapter)", "past_loss": "Past run: training loss",
    "past_val_loss": "Past run: validation loss",
    "before_after": "Base vs fine-tuned on the validation split", "side_by_side": "Outputs side by side",
    "adapters": "Saved adapters", "remove": "Remove", "merge": "Merge into a full model",
    "share": "Share on the Hugging Face Hub", "repo_id": "Repo id (USER/NAME)", "private": "Private repo",
    "hf_token": "Write token (optional: HF_TOKEN or the login button are used otherwise; never shown or stored)",
    "dry_run": "Build the upload folder (dry run)", "push": "Push to the Hub", "refresh": "Refresh",
    "share_intro": "Uploads the adapter with a model card: base model, labels, and the base-vs-fine-tuned "
                   "scores from the validation comparison as a model-index.",
    "demo_note": "**Demo mode** — this Space is shared: your chats, adapters and training runs are yours alone "
                 "(kept for this browser), training is capped (400 rows, 3 epochs, 60 steps), evaluation too "
                 "(100 rows, 2 models). For full use, duplicate the Space and set `LMDEMO_DEMO_MODE=0`.",
}

ZH = {
    "title": "# lmdemo —— 小型语言模型：从理论到实践",
    "intro": "以下所有功能都使用 PyPI 包自带的小模型离线运行。选择一个标签页，点一个示例，再点橙色按钮。",
    "examples": "示例",
    "tab_generate": "文本生成", "tab_sentiment": "情感分析", "tab_summarize": "摘要",
    "tab_translate": "翻译", "tab_lab": "语言模型实验室", "tab_models": "模型",
    "model": "模型（内置名称、本地文件夹、Hub ID 或推理引擎）", "adapter": "适配器", "quantize": "量化",
    "mode": "模式", "mode_chat": "对话（SmolLM2-Instruct）", "mode_completion": "续写（Gemma-3 基础模型）",
    "chat": "对话", "prompt": "你的消息或要续写的文本", "send": "发送", "stop": "停止",
    "clear": "清空", "settings": "采样设置", "max_new_tokens": "最多生成的词元数",
    "temperature": "温度（0 = 贪心）", "top_p": "Top-p", "top_k": "Top-k（0 = 关闭）",
    "repetition_penalty": "重复惩罚", "seed": "随机种子（相同种子和设置 = 相同文本）",
    "stats": "词元数与速度",
    "text": "文本", "classify": "分类", "sentiment_label": "情感",
    "batch": "批量文本", "batch_text": "每行一条文本", "batch_file": "……或上传 .txt / .csv 文件",
    "classify_all": "全部分类", "results": "结果", "download": "下载 CSV",
    "summary_text": "要摘要的文本", "length_unit": "长度单位", "sentences": "句", "words": "词",
    "length": "长度", "summarise": "生成摘要", "summary": "摘要", "lengths": "长度对比",
    "processes": "进程数（每个 GPU 一个）",
    "source_lang": "源语言", "target_lang": "目标语言", "swap": "⇄ 交换", "translate": "翻译",
    "translation": "译文", "source_text": "要翻译的文本",
    "lab_score": "### 链式法则：p(文本) = Π p(词元 | 前面的词元)", "score": "计算概率",
    "token_strip": "每个词元按其概率着色（越深越可能）",
    "lab_summary": "汇总", "token_table": "每个词元的对数概率",
    "lab_next": "### 下一个词元的分布", "prefix": "前缀", "top_k_show": "显示多少个词元",
    "predict": "预测下一个词元", "next_plot": "最可能的下一个词元",
    "lab_bigram": "### 与二元语法模型比较（加 k 平滑）", "corpus": "用于拟合二元模型的语料（每行一句）",
    "smoothing": "k（加 k 平滑）", "compare": "比较困惑度", "comparison": "困惑度",
    "lab_probs": "概率", "lab_attention": "注意力", "lab_positions": "位置编码",
    "lab_lstm": "LSTM、二元语法与 Transformer",
    "attn_intro": "### 缩放点积注意力（在已加载的模型上）\n"
                  "$$\\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}\\left(\\frac{QK^\\top}{\\sqrt{d_k}}\\right) V$$\n"
                  "图中第 *i* 行是词元 *i* 的 softmax：它从每个词元的值向量中取多少。每行之和为 1。"
                  "因果语言模型的词元只能看到自身和之前的词元；编码器的词元能看到全部。"
                  "颜色深浅随权重的平方根增加，小权重也看得见；把鼠标移到格子上可看具体数值。",
    "attn_text": "文本（只显示前 64 个词元）", "layer": "层", "head": "注意力头",
    "show_attention": "显示注意力", "attn_reading": "每个词元在看哪里",
    "pe_intro": "### 正弦位置编码（最初的 Transformer）\n"
                "$$PE_{(pos,\\,2i)} = \\sin\\left(\\frac{pos}{10000^{2i/d_{model}}}\\right) \\qquad "
                "PE_{(pos,\\,2i+1)} = \\cos\\left(\\frac{pos}{10000^{2i/d_{model}}}\\right)$$\n"
                "低维转得快，高维转得慢：合在一起，每个位置都有独特的模式。",
    "pe_positions": "位置数", "d_model": "d_model（偶数）", "pe_dims": "要画出的维度（逗号分隔）",
    "plot_positions": "绘图", "pe_table": "整张编码表", "pe_curves": "所选维度随位置的变化",
    "rope_intro": "### 已加载的模型改用的方法：旋转位置编码（RoPE）\n"
                  "$$\\theta_i = \\mathrm{base}^{-2i/d}, \\qquad (q_{2i}, q_{2i+1}) \\mapsto "
                  "R(pos \\cdot \\theta_i)\\,(q_{2i}, q_{2i+1})$$\n"
                  "查询和键的每一对维度都按随位置增大的角度旋转。",
    "rope_curves": "各频率对的 cos(旋转角) 随位置的变化",
    "lstm_intro": "### 在这里训练的 LSTM 语言模型，与二元语法和 Transformer 并排比较\n"
                  "$$f_t = \\sigma(W_f x_t + U_f h_{t-1} + b_f) \\quad i_t = \\sigma(W_i x_t + U_i h_{t-1} + b_i) "
                  "\\quad o_t = \\sigma(W_o x_t + U_o h_{t-1} + b_o)$$\n"
                  "$$\\tilde c_t = \\tanh(W_c x_t + U_c h_{t-1} + b_c) \\qquad c_t = f_t \\odot c_{t-1} + "
                  "i_t \\odot \\tilde c_t \\qquad h_t = o_t \\odot \\tanh(c_t)$$\n"
                  "一个词级 `nn.LSTM` 学习下面的语料；二元语法模型也在同一语料上拟合。然后用三个模型为同一段文本打分。",
    "lstm_corpus": "语料（每行一句；内置语料中的动词要与几个词之前的主语一致）",
    "lstm_steps": "训练步数", "lstm_hidden": "LSTM 单元数", "train_lstm": "训练 LSTM",
    "lstm_loss": "LSTM 训练损失（每词奈特）", "lstm_text": "要打分的文本",
    "compare3": "用三个模型打分", "strip_bigram": "二元语法", "strip_lstm": "LSTM",
    "strip_transformer": "Transformer", "gates_plot": "沿文本的门激活值（LSTM 各单元的平均）",
    "gates_table": "每个词的门",
    "models_intro": "内置模型只需从 PyPI 获取一次并转换为 safetensors。任何模型框都可以输入 Hub ID 或本地文件夹。",
    "prepare": "获取 / 转换全部", "refresh": "刷新",
    "err_empty": "请先输入一些文本。",
    "tab_evaluate": "评估", "task": "任务", "limit": "样本数（前 N 个）",
    "eval_models": "要比较的模型（逗号分隔：default、内置名称、适配器文件夹、Hub ID）",
    "eval_file": "评估集（留空 = 内置评估集；含任务字段的 JSONL/CSV）", "evaluate": "评估",
    "metrics": "指标", "per_example": "逐个样本（✗ = 标签错误）", "download_json": "下载结果 JSON",
    "tab_finetune": "微调", "sample": "示例数据集", "train_file": "……或上传 CSV / JSONL / Parquet",
    "first_col": "文本 / 提示 / 原文列", "second_col": "标签 / 回答 / 译文列", "check_data": "检查数据",
    "preview": "前几行", "train_settings": "训练设置", "epochs": "轮数", "learning_rate": "学习率",
    "max_steps": "最大步数（0：按轮数）", "ask_anything": "问点什么……",
    "q_none": "不量化", "task_sentiment": "情感", "task_classification": "分类",
    "task_translation": "翻译", "task_summarisation": "摘要", "task_generation": "生成",
    "ft_classification": "分类", "ft_sft": "指令微调（SFT）", "ft_translation": "翻译（seq2seq）",
    "ft_summarisation": "摘要（seq2seq）", "bundled_sentiment": "情感（内置 MiniLM + LoRA）",
    "default_summariser": "默认（一句：内置 Gemma 270M + 新闻 LoRA；更长：SmolLM2）",
    "sample_topics (4 classes)": "主题（4 类）", "sample_sentiment (2 classes)": "情感（2 类）",
    "sample_instructions (short answers)": "指令（简短回答）",
    "lora_r": "LoRA 秩 r", "adapter_name": "适配器名称", "estimate": "估算内存和时间",
    "start": "开始训练", "cancel": "取消", "loss": "训练损失", "val_loss": "验证损失",
    "past_runs": "以往的训练", "past_run": "训练（其适配器）", "past_loss": "以往训练：训练损失",
    "past_val_loss": "以往训练：验证损失",
    "before_after": "验证集上的基础模型与微调模型", "side_by_side": "输出对比",
    "adapters": "已保存的适配器", "remove": "删除", "merge": "合并为完整模型",
    "share": "分享到 Hugging Face Hub", "repo_id": "仓库 ID（用户/名称）", "private": "私有仓库",
    "hf_token": "写入令牌（可选；否则使用 HF_TOKEN 或登录按钮；不会显示或保存）",
    "dry_run": "生成上传文件夹（试运行）", "push": "推送到 Hub", "refresh": "刷新",
    "share_intro": "上传适配器及模型卡：基础模型、标签，以及验证集上基础模型与微调模型的分数（model-index）。",
    "demo_note": "**演示模式** —— 这个 Space 是共享的：你的对话、适配器和训练任务只属于你（保存在此浏览器中），"
                 "训练受限（400 行、3 轮、60 步），评估也受限（100 行、2 个模型）。"
                 "如需完整功能，请复制此 Space 并设置 `LMDEMO_DEMO_MODE=0`。",
}

# The browser translates any string that equals a key (a dropdown choice, a table cell), so the keys it sees
# carry a prefix no data column or model output has.
KEY_PREFIX = "lmdemo_ui_"
# Language names of the language pickers (codes as lmdemo.jobs.translation.LANGUAGES).
LANGUAGE_NAMES_ZH = {'en': '英语', 'fr': '法语', 'de': '德语', 'es': '西班牙语', 'zh': '中文', 'it': '意大利语', 'pt': '葡萄牙语', 'nl': '荷兰语', 'ru': '俄语', 'ja': '日语', 'ar': '阿拉伯语', 'ro': '罗马尼亚语'}


def _with_languages(table: dict, lang: str) -> dict:
    from lmdemo.jobs.translation import LANGUAGES

    names = LANGUAGES if lang == "en" else {c: LANGUAGE_NAMES_ZH.get(c, n) for c, n in LANGUAGES.items()}
    return {**table, **{f"lang_{code}": name for code, name in names.items()}}


EN, ZH = _with_languages(EN, "en"), _with_languages(ZH, "zh")
I18N = gr.I18n(en={KEY_PREFIX + k: v for k, v in EN.items()}, zh={KEY_PREFIX + k: v for k, v in ZH.items()})


def ui(key: str):
    """A label the browser shows in its language."""
    if key not in EN:
        raise KeyError(key)
    return I18N(KEY_PREFIX + key)

_ERROR_PREFIX = {
    "InputError": ("Input problem", "输入有误"),
    "ModelNotFoundError": ("Model not found", "找不到模型"),
    "AdapterError": ("Adapter problem", "适配器有误"),
    "StoreError": ("Model store problem", "模型存储出错"),
    "ConfigError": ("Setting problem", "设置有误"),
    "HubError": ("Hub problem", "Hub 出错"),
    "Stopped": ("Stopped", "已停止"),
}


def lang_of(request: gr.Request | None) -> str:
    """'zh' when the browser prefers Chinese, else 'en'."""
    header = ""
    if request is not None and getattr(request, "headers", None) is not None:
        header = request.headers.get("accept-language", "") or ""
    first = header.split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def text(key: str, lang: str) -> str:
    return (ZH if lang == "zh" else EN).get(key, EN.get(key, key))


def error_message(exc: Exception, lang: str) -> str:
    """One line for the page: a localised kind of problem, then the library's specific message."""
    en, zh = _ERROR_PREFIX.get(type(exc).__name__, ("Error", "出错"))
    return f"{zh}：{message(str(exc), lang)}" if lang == "zh" else f"{en}: {exc}"


# ---------------------------------------------------------------- what the server writes on the page
# key -> (English, Chinese) str.format templates: stats lines, status lines, toasts and table headers.
LINES = {
    "chat_stats": ("**{tokens}** tokens · **{tps:.1f}** tok/s · first token after {first:.2f} s · {backend}",
                   "**{tokens}** 个词元 · **{tps:.1f}** 词元/秒 · 首个词元用时 {first:.2f} 秒 · {backend}"),
    "speed": (" · {tokens} tokens · {tps:.1f} tok/s · {backend}", " · {tokens} 个词元 · {tps:.1f} 词元/秒 · {backend}"),
    "lengths": ("input **{words}** words ({tokens} tokens) → summary **{out}** words",
                "原文 **{words}** 词（{tokens} 个词元）→ 摘要 **{out}** 词"),
    "parts": (" · {n} parts", " · 分 {n} 段"),
    "fact_passed": ("✓ every number and name in the summary is in the text", "✓ 摘要中的每个数字和名称都出自原文"),
    "fact_regenerated": ("⚠️ not in the text: {flagged}; summarised again, told to use only the text's facts",
                         "⚠️ 原文中没有：{flagged}；已重新摘要，并要求只用原文中的事实"),
    "fact_trimmed": ("⚠️ not in the text: {flagged}; cut from the summary", "⚠️ 原文中没有：{flagged}；已从摘要中删去"),
    "fact_lead": ("⚠️ not in the text: {flagged}; the text's opening sentence shown instead",
                  "⚠️ 原文中没有：{flagged}；改为显示原文的开头句"),
    "still_unsupported": (" · still unsupported: {items}", " · 仍无依据：{items}"),
    "sentences": ("**{n}** sentence{s}", "**{n}** 句"),
    "lab_totals": ("**{n}** tokens · total log-probability **{total:.2f}** nats · "
                   "perplexity = exp({neg:.2f} / {n}) = **{ppl:.2f}**",
                   "**{n}** 个词元 · 总对数概率 **{total:.2f}** 奈特 · 困惑度 = exp({neg:.2f} / {n}) = **{ppl:.2f}**"),
    "bigram_table": ("| model | predicted tokens | perplexity |\n|---|---|---|\n"
                     "| neural LM ({model}) | {lm_tokens} | {lm_ppl:.2f} |\n"
                     "| bigram, add-{k} | {bi_tokens} | {bi_ppl:.2f} |\n\n"
                     "Lower is better. The two count different units (sub-word tokens vs words), so compare trends, "
                     "not digits.",
                     "| 模型 | 预测的词元数 | 困惑度 |\n|---|---|---|\n"
                     "| 神经语言模型（{model}） | {lm_tokens} | {lm_ppl:.2f} |\n"
                     "| 二元语法，加 {k} 平滑 | {bi_tokens} | {bi_ppl:.2f} |\n\n"
                     "越低越好。两者的计数单位不同（子词词元与单词），所以比较趋势，而不是具体数字。"),
    "attn_header": ("**{model}** · layer **{layer}** of {layers} · head **{head}** of {heads} · {n} tokens · {kind}",
                    "**{model}** · 第 **{layer}** 层（共 {layers} 层）· 第 **{head}** 个头（共 {heads} 个）· {n} 个词元 · {kind}"),
    "attn_causal": ("causal: a token sees only itself and earlier tokens", "因果：词元只能看到自身和之前的词元"),
    "attn_both": ("encoder: every token sees the whole text", "编码器：每个词元都能看到整段文本"),
    "sinus_caption": ("{positions} positions (rows, top to bottom) × {d_model} dimensions (columns, left to right) · "
                      "red +1, white 0, blue −1",
                      "{positions} 个位置（行，自上而下）× {d_model} 个维度（列，从左到右）· 红 +1，白 0，蓝 −1"),
    "wavelength": ("dimension {dim}: a full turn every {length:,.1f} positions", "维度 {dim}：每 {length:,.1f} 个位置转一整圈"),
    "rope_head": ("**{model}** · head size {head_dim} · rotated dimensions {rotary_dim}",
                  "**{model}** · 每个头 {head_dim} 维 · 旋转 {rotary_dim} 维"),
    "rope_table": ("layers: {layers} · base θ = {theta:,g} · {kind} · {pairs}", "层：{layers} · 基数 θ = {theta:,g} · {kind} · {pairs}"),
    "rope_pair": ("pair {pair}: {freq:.4g} rad per position (a turn every {length:,.1f})",
                  "第 {pair} 对：每个位置 {freq:.4g} 弧度（每 {length:,.1f} 个位置一圈）"),
    "lstm_progress": ("step {step}/{steps} · loss {loss:.3f} · perplexity {ppl:.2f} · {seconds:.1f} s",
                      "第 {step}/{steps} 步 · 损失 {loss:.3f} · 困惑度 {ppl:.2f} · {seconds:.1f} 秒"),
    "lstm_done": ("Trained **{steps}** steps ({reason}) in {seconds:.1f} s · vocabulary {vocab} · perplexity on the "
                  "corpus {before:.1f} → **{after:.2f}**",
                  "训练了 **{steps}** 步（{reason}），用时 {seconds:.1f} 秒 · 词表 {vocab} · 语料上的困惑度 {before:.1f} → **{after:.2f}**"),
    "reason_done": ("all steps", "全部完成"), "reason_time": ("time limit reached", "到达时间上限"),
    "reason_stopped": ("stopped", "已停止"),
    "sbs_head": ("| model | unit | predicted | perplexity |\n|---|---|---|---|", "| 模型 | 单位 | 预测数 | 困惑度 |\n|---|---|---|---|"),
    "name_bigram": ("bigram (k={k})", "二元语法（k={k}）"),
    "sbs_row": ("| {name} | {unit} | {n} | **{ppl:.2f}** |", "| {name} | {unit} | {n} | **{ppl:.2f}** |"),
    "strip_label": ("{name} · perplexity {ppl:.2f} per {unit}", "{name} · 每{unit}困惑度 {ppl:.2f}"),
    "removed": ("Removed {name}.", "已删除 {name}。"),
    "merged": ("Merged model saved in `{out}` (usable as a local model folder in every model box).",
               "合并后的模型保存在 `{out}`（可作为本地模型文件夹填入任何模型框）。"),
    "dry_run": ("Dry run: these files would be uploaded to `{repo}`: {files}", "试运行：以下文件将上传到 `{repo}`：{files}"),
    "pushed": ("Pushed {files} to [{repo}]({url}).", "已将 {files} 推送到 [{repo}]({url})。"),
    "shared": ("(shared)", "（共享）"),
    "training_started": ("Training {name} started: {rows} rows, {val} for validation.",
                         "训练 {name} 已开始：{rows} 行，{val} 行用于验证。"),
    "slot_busy": ("The training slot is busy with another visitor's run.", "训练位正被另一位访客的任务占用。"),
    "no_job": ("No training job yet.", "还没有训练任务。"),
    "job_line": ("**{name}** ({task}) · **{state}** · step {step}/{max}{rate}{eta} · {elapsed:.0f} s — {message}",
                 "**{name}**（{task}）· **{state}** · 第 {step}/{max} 步{rate}{eta} · {elapsed:.0f} 秒 —— {message}"),
    "rate": (" · {rate:.2f} it/s", " · {rate:.2f} 步/秒"),
    "eta": (" · ETA {eta:.0f} s", " · 预计还需 {eta:.0f} 秒"),
    "restored": ("_(the last run before the app restarted)_", "_（应用重启前的最后一次训练）_"),
    "plan_rows": ("**{train}** training rows, **{val}** validation rows", "**{train}** 行训练数据，**{val}** 行验证数据"),
    "plan_labels": (" · labels: {labels}", " · 标签：{labels}"),
    "no_past_run": ("No past run picked.", "未选择以往的训练。"),
    "past_head": ("**{name}** ({task}) · finished {finished}", "**{name}**（{task}）· 完成于 {finished}"),
    "stopped_early": (" · stopped early", " · 提前停止"),
    "settings": ("settings: {settings}", "设置：{settings}"),
    "lower_better": ("lower is better; ", "越低越好；"),
    "includes_zero": ("the interval includes 0: no clear difference on these examples",
                      "区间包含 0：在这些样本上没有明显差别"),
    "excludes_zero": ("the interval excludes 0", "区间不包含 0"),
}

# Chinese templates of sentences the library writes in English (the page shows the library's own for English).
ZH_ONLY = {
    "attn_first": "{token} 是第一个词元：只能看自己。",
    "attn_reads": "{token} 最关注 {named}。",
    "attn_then": "，其次是 ",
    "attn_itself": "自身",
    "rope_note": ("最初的 Transformer 给每个词元的嵌入加上一个固定的正弦向量：位置只在最底层与内容混合一次，"
                  "而在短文本上训练的模型遇到长文本时会碰到没见过的绝对位置。旋转位置编码（RoPE）则在每个注意力层里，"
                  "把每个查询和键的每一对维度按与位置成正比的角度旋转。于是位置 m 的查询与位置 n 的键的点积只取决于 m − n："
                  "注意力直接看到相对距离，嵌入上什么也不加，而且低频的维度对可以在训练后重新缩放（NTK、YaRN、Llama 3 缩放）"
                  "来延长上下文。所以 Llama、SmolLM2、Gemma、Qwen 和 Mistral 都使用 RoPE。"),
    "took": "实际用时 {done}（{steps} 步）",
    "estimated_took": "估计 {guess} · 实际用时 {done}（{steps} 步）",
    "seconds": "{v:.0f} 秒",
    "per_step": "{v:.2f} 秒/步",
    "worse": "警告：在验证数据上，微调后的适配器比基础模型更差（{metric} {tuned:.3f}，基础模型 {base:.3f}）。"
             "适配器已保存，但单用基础模型效果更好：使用前请尝试更多数据、更多步数或其他学习率。",
    "estimate": "每轮约 {per_epoch:.1f} 分钟（{steps} 步 × {per_step:.2f} 秒）{run} · 约 {mb:.0f} MB 内存 · "
                "可训练参数 {trainable:,} / 共 {total:,}",
    "estimate_run": " · {steps} 步：约 {seconds:.0f} 秒训练",
    "paired": "在 {n} 个{rows}上 {second} 对比 {first}：胜 {wins}，负 {losses}，平 {ties}；{metric} 差值 {diff}"
              "（{direction}95 % 自助法置信区间 {low} 到 {high}；{verdict}）。",
}


def say_zh(key: str, **values) -> str:
    return ZH_ONLY[key].format(**values)


# Words the server puts in cells and status lines (job states, model states, table headers, metric names).
WORDS_ZH = {
    "starting": "启动中", "running": "训练中", "finished": "已完成", "failed": "失败", "cancelled": "已取消",
    "cancelling": "取消中", "idle": "空闲",
    "classification": "分类", "sft": "指令微调", "translation": "翻译", "summarization": "摘要",
    "summarisation": "摘要", "generation": "生成",
    "ready": "就绪", "fetched": "已下载", "missing": "未获取",
    "model": "模型", "n": "样本数", "input": "输入", "reference": "参考", "prediction": "预测",
    "base": "基础模型", "fine-tuned": "微调后", "validation example": "验证样本", "example": "样本", "step": "步", "loss": "损失", "token": "词元",
    "probability": "概率", "value": "数值", "bar": "指标 · 模型",
    "log p": "log p", "p": "p", "text": "文本", "label": "标签", "score": "分数",
    "name": "名称", "task": "任务", "metrics": "指标", "status": "状态", "size": "大小", "params": "参数量",
    "good for": "适用于", "licence": "许可证", "PyPI": "PyPI",
    "accuracy": "准确率", "f1": "F1", "perplexity": "困惑度", "chrf": "chrF", "bleu": "BLEU",
    "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum",
    "sentence-level chrF": "句级 chrF", "ROUGE-L": "ROUGE-L",
    "base_model": "基础模型", "epochs": "轮数", "learning_rate": "学习率", "lora_r": "LoRA 秩", "batch_size": "批大小",
    "max_steps": "最大步数", "max_length": "最大长度", "quantize": "量化", "seed": "随机种子", "format": "格式",
    "source": "源语言", "target": "目标语言", "(+parts)": "（另有分片）",
    "dimension": "维度", "position": "位置", "pair": "频率对", "all": "全部", "sliding_attention": "滑动窗口注意力层",
    "full_attention": "全局注意力层", "word": "词", "gate": "门", "mean activation": "平均激活值",
    "default": "标准", "forget gate": "遗忘门", "input gate": "输入门", "output gate": "输出门",
    "stopped": "已停止", "length": "达到长度上限", "eos": "生成结束", "stop_string": "遇到停止串",
}


def say(key: str, lang: str, **values) -> str:
    en, zh = LINES[key]
    return (zh if lang == "zh" else en).format(**values)


def word(value: str, lang: str) -> str:
    """A state, header or metric name in the visitor's language (anything else as it is)."""
    return WORDS_ZH.get(value, value) if lang == "zh" else value


# Library sentences the page shows (notes, training messages, common input errors): pattern -> Chinese. The
# library writes English for the CLI and scripts; what has no entry here is shown as the library wrote it.
_PHRASES_ZH = [(re.compile(p), zh) for p, zh in (
    (r"^starting the worker process$", "正在启动训练进程"),
    (r"^training$", "训练中"),
    (r"^finished$", "已完成"),
    (r"^evaluating base and fine-tuned models on the validation split$", "正在验证集上评估基础模型和微调模型"),
    (r"^cancelling: stopping after the current step and saving the adapter$", "正在取消：当前步结束后停止并保存适配器"),
    (r"^cancelled; the adapter trained so far is saved$", "已取消；已保存目前训练好的适配器"),
    (r"^cancelled before an adapter could be saved$", "在保存适配器之前已取消"),
    (r"^the worker exited with code (-?\d+)$", r"训练进程以代码 \1 退出"),
    (r"^demo mode: (\d+) steps at most$", r"演示模式：最多 \1 步"),
    (r"^demo mode: (.+)$", r"演示模式：\1"),
    (r"^The text is (\d+) tokens: summarised in (\d+) parts, then combined\.$", r"原文有 \1 个词元：分 \2 段摘要后合并。"),
    (r"^Not in the text: (.+)\. Summarising again, told to use only its names and numbers\.$",
     r"原文中没有：\1。正在重新摘要，并要求只用原文中的名称和数字。"),
    (r"^Cut the part stating (.+): not in the text\.$", r"已删去提到 \1 的部分：原文中没有。"),
    (r"^Every sentence of the summary stated something not in the text \((.+)\): showing the text's opening "
     r"instead\.$", r"摘要的每一句都有原文中没有的内容（\1）：改为显示原文的开头。"),
    (r"^The second summary states only names and numbers found in the text\.$", "第二次摘要只使用了原文中的名称和数字。"),
    (r"^No examples for (.+) → (.+): the model is prompted without examples\.$", r"没有 \1 → \2 的示例：提示中不带示例。"),
    (r"^This model has no BOS token, so the first token \((.+)\) cannot be scored; scoring from the second\.$",
     r"此模型没有 BOS 词元，因此无法为第一个词元（\1）打分；从第二个开始。"),
    (r"^Text truncated to its first (\d+) of (\d+) tokens\.$", r"文本已截断为前 \1 个词元（共 \2 个）。"),
    (r"^(.+): skipped (\d+) row\(s\) with an empty (.+)\.$", r"\1：跳过了 \2 行 \3 为空的数据。"),
    (r"^(.+): skipped (\d+) row\(s\) longer than (\d+) characters\.$", r"\1：跳过了 \2 行超过 \3 个字符的数据。"),
    (r"^(.+): read the first ([\d,]+) rows(?: of ([\d,]+))?; a demo fine-tune takes at most ([\d,]+)\.$",
     r"\1：只读取了前 \2 行；演示模式的微调最多使用 \4 行。"),
    (r"^(\w+Error: )?Model '(.+)' is not in the local Hub cache and the Hub is unreachable \(offline\)\. "
     r"Built-ins work offline: (.+)$", r"模型 '\2' 不在本地 Hub 缓存中，且无法连接 Hub（离线）。内置模型可离线使用：\3"),
    (r"^Showing the first (\d+) of (\d+) tokens\.$", r"只显示前 \1 个词元（共 \2 个）。"),
    (r"^This shared demo trains for at most (\S+) s\.$", r"共享演示最多训练 \1 秒。"),
    (r"^(\d+) word\(s\) are not in the training corpus and were scored as <unk>\.$",
     r"有 \1 个词不在训练语料中，按 <unk> 计分。"),
    (r"^Bigram and LSTM perplexities are per word \(and line end\) over the same vocabulary; the Transformer's is "
     r"per subword token, so compare it with them loosely\.$",
     "二元语法和 LSTM 的困惑度按词（及行尾）计算，词表相同；Transformer 的按子词词元计算，与它们只能粗略比较。"),
    (r"^`(layer|head)` must be from 0 to (\d+) \((.+) has (\d+) (layers|heads per layer)\); got (\d+)\.$",
     r"`\1` 必须在 0 到 \2 之间（\3 共 \4 个）；收到 \6。"),
    (r"^`d_model` must be even \(sine and cosine come in pairs\); got (\d+)\.$",
     r"`d_model` 必须是偶数（正弦和余弦成对出现）；收到 \1。"),
    (r"^`(\w+)` lists (\d+) entries; at most (\d+) are drawn\.$", r"`\1` 列了 \2 项；最多画 \3 项。"),
    (r"^`(\w+)` must be a whole number from (\S+) to (\S+); got (.+)\.$", r"`\1` 必须是 \2 到 \3 之间的整数；收到 \4。"),
    (r"^`(\w+)` must be whole numbers separated by commas; got (.+)\.$", r"`\1` 必须是用逗号分隔的整数；收到 \2。"),
    (r"^`(\w+)` is ([\d,]+) characters; the (LSTM|attention view|comparison) takes at most ([\d,]+)(.*)$",
     r"`\1` 有 \2 个字符；最多 \4 个。"),
    (r"^`corpus` has ([\d,]+) different words; the LSTM takes at most ([\d,]+)\.$",
     r"语料有 \1 个不同的词；LSTM 最多接受 \2 个。"),
    (r"^`corpus` has no words: .*$", "语料中没有词：请至少粘贴一行文本来训练 LSTM。"),
    (r"^No trained LSTM with id .*$", "找不到这个训练好的 LSTM（只保留你最近的几个）：请重新训练。"),
    (r"^Train the LSTM first .*$", "请先训练 LSTM（上面的训练按钮），再比较。"),
    (r"^`model` (.+) has no rotary position encoding \(it uses (.+) position embeddings\)\.$",
     r"模型 \1 没有旋转位置编码（它使用 \2 位置嵌入）。"),
    (r"^`model` (.+) is an encoder-decoder model; the attention view takes a causal LM or an encoder\.$",
     r"模型 \1 是编码器-解码器模型；注意力视图需要因果语言模型或编码器。"),
    (r"^`model` (.+) is an adapter; the attention view shows a base model's own attention: pick its base, (.+)\.$",
     r"模型 \1 是适配器；注意力视图显示基础模型自身的注意力：请选择它的基础模型 \2。"),
    (r"^This model rescales its frequencies \((.+)\); the table shows the plain formula before that rescaling\.$",
     r"此模型会重新缩放频率（\1）；表中是缩放之前的原始公式。"),
    (r"^CUDA was requested but no CUDA device is available; using the CPU\.$", "请求了 CUDA，但没有可用的 CUDA 设备；改用 CPU。"),
    (r"^A training job \((.+)\) is already running; wait for it or cancel it\.$", r"训练任务（\1）正在运行；请等待它结束或取消它。"),
    (r"^(.+): missing column\(s\) (.+); the file has (.+)\. Map them to (.+)\.$",
     r"\1：缺少列 \2；文件中的列为 \3。请将它们对应到 \4。"),
    (r"^The label column has a single class \((.+)\); a classifier needs two or more\.$",
     r"标签列只有一个类别（\1）；分类器至少需要两个。"),
    (r"^Upload a CSV/JSONL/Parquet file or pick a sample set\.$", "请上传 CSV/JSONL/Parquet 文件或选择示例数据集。"),
    (r"^(.+) looks binary; upload UTF-8 text \(\.txt, \.csv, \.jsonl\)\.$",
     r"\1 看起来是二进制文件；请上传 UTF-8 文本（.txt、.csv、.jsonl）。"),
)]


def notes(note: str, lang: str) -> str:
    """A library note (its sentences joined by spaces) in the visitor's language, sentence by sentence."""
    return " ".join(message(part, lang) for part in re.split(r"(?<=\.)\s+(?=[A-Z])", note) if part)


def message(msg: str, lang: str) -> str:
    """A library sentence in the visitor's language, where the catalogue has it."""
    if lang != "zh":
        return msg
    msg = str(msg)
    for pattern, zh in _PHRASES_ZH:
        if pattern.search(msg):
            return pattern.sub(zh, msg)
    return msg


_GOOD_FOR_ZH = {
    "smollm2-135m-instruct": "对话、指令、摘要",
    "gemma-3-270m": "原始续写、少样本翻译（多语言基础模型）",
    "all-minilm-l6-v2": "句向量；文本分类器（情感）的基础模型",
}


def good_for(name: str, english: str, lang: str) -> str:
    return _GOOD_FOR_ZH.get(name, english) if lang == "zh" else english
