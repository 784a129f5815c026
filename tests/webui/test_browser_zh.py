"""Every tab run once on its defaults on a Chinese page (locale zh-CN), then its visible text checked for English
left untranslated outside the user's input and the models' output; the same clicks on an English page give the
matching screenshots. Screenshots land in test-artifacts/ (zh-<tab>.png, en-<tab>.png), and the zh findings also in
test-artifacts/zh-untranslated.txt.

zh-CN makes Chromium send Accept-Language zh-CN: gradio localises the labels (webui.i18n) in the browser, and the
server localises its own messages (webui.i18n.lang_of) from that header.
"""

from __future__ import annotations

import re

import pytest

from browser_helpers import ARTIFACTS, open_page as _page, require_chromium, shot as _shot
from webui.i18n import EN, ZH

pytestmark = pytest.mark.browser
require_chromium()


@pytest.fixture(scope="module")
def base_url(app_url):
    return app_url


# ---------------------------------------------------------------- the detector

CELLS = "[role=gridcell]"
# What is left out of the check, and why. Each selector was checked against gradio 6.31's rendered page.
EXCLUDED = [
    ".message-wrap",                            # chatbot bubbles: the user's message and the model's reply
    ".gallery", ".gallery-item",                # gr.Examples: sample input data (the labels are the inputs)
    CELLS, ".row-number-cell",                  # dataframe body cells: input rows, model output, scores
    ".sizing-body",                             # the dataframe's hidden copy of its rows, used to size columns
    "[data-testid=label-output-value]", ".output-class", ".confidence-set",  # gr.Label: the classifier's labels
    ".textfield",                               # gr.HighlightedText (LM lab token strip): the model's tokens
    "svg",                                      # plots: tick labels are tokens/model names (titles checked below)
    "pre", "code", ".cm-editor",                # code blocks and inline code: identifiers, commands, file contents
    ".katex",                                   # typeset formulas (softmax, tanh, PE_pos): math notation
    "#attention-map",                           # the attention heatmap's row and column labels: the model's tokens
    ".sr-only",                                 # screen-reader-only text, not on the screen
    "footer",                                   # gradio's own footer (API / Built with Gradio / Settings)
]

# Dropdowns whose value is a name rather than a word: model/adapter names, the data file's column names, run names.
NAME_DROPDOWNS = ("model", "adapter", "first_col", "second_col", "past_run")

# Tables whose headers are the data file's own column names (the column pickers offer the same names).
DATA_HEADER_TABLES = ("preview",)

# Words that stay English on a Chinese page. Tokens with a digit or an underscore (smollm2-135m-instruct,
# gemma-3-270m, SmolLM2-Instruct, 4bit, seq2seq, HF_TOKEN, apache-2.0), dotted names (README.md) and file
# extensions (.txt) are identifiers and are never words, so they need no entry here.
ALLOWED = {
    "lmdemo",                    # the project's name
    "pypi",                      # the Python Package Index, a proper name
    "hub", "hugging", "face",    # the Hugging Face Hub, a proper name (ZH: "Hub ID", "分享到 Hugging Face Hub")
    "gemma",                     # a model family and its licence's name (Models table, licence column)
    "lora", "sft",               # method abbreviations kept in Chinese ML texts (ZH: "LoRA 秩 r")
    "top",                       # the sampling methods Top-p / Top-k keep their names (ZH: "Top-p")
    "csv", "json", "jsonl", "parquet", "safetensors",  # file formats (ZH: "下载 CSV", "JSONL/CSV", "safetensors")
    "gpu", "cpu",                # hardware abbreviations (ZH: "每个 GPU 一个")
    "tok",                       # the tok/s speed unit, like MB
    "fastgen", "transformers",   # names of the decoding back-ends shown beside the speed
    "default",                   # the literal keyword typed into Evaluate's model box (ZH["eval_models"])
    "exp", "cos", "sin", "softmax",  # math functions in LM lab's formulas and plot titles, like p(...)
    "chrf", "bleu", "rouge",     # metric names, kept in Chinese texts (WORDS_ZH maps rougeL to ROUGE-L)
    "lstm", "transformer", "rope",  # model architectures kept in Chinese ML texts (ZH["lab_lstm"], ZH["rope_note"])
    "llama", "qwen", "mistral", "ntk", "yarn",  # model families and RoPE scaling methods named in the RoPE note
}

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.'’/+-]*")


def english_words(line: str, allowed: set[str] = ALLOWED) -> list[str]:
    """The English words of a line (runs of 3+ Latin letters), less identifiers and allowed names."""
    words = []
    for m in _TOKEN.finditer(line):
        token = m.group().rstrip(".'’/+-")
        if re.search(r"[0-9_]", token) or re.search(r"[A-Za-z]\.[A-Za-z]", token):
            continue  # model names, versions, env variables, file and dotted names
        if re.fullmatch(r"[\w.-]+/[\w.-]+", token):
            continue  # a Hub id the visitor typed: "owner/name"
        if re.fullmatch(r"[a-z]+(-[a-z]+)+", token):
            continue  # kebab-case: names of adapters and runs the visitor typed
        before = line[max(0, m.start() - 2):m.start()]
        if before.endswith(".") and not before[:-1].isalnum():
            continue  # a file extension: ".txt", ".csv"
        words += [w for w in re.findall(r"[A-Za-z]{3,}", token) if w.lower() not in allowed]
    return words


_DETECT_JS = """
([excluded, nameDropdowns, dataHeaderTables]) => {
  const HIDE = 'data-l10n-hide';
  const visible = el => el.checkVisibility({visibilityProperty: true, opacityProperty: true});
  const isExcluded = el => excluded.some(s => el.closest(s));
  const labelOf = el => el.getAttribute('aria-label')
      || el.closest('label')?.querySelector('[data-testid=block-info]')?.innerText || '';
  const extra = [];
  // Text a visitor reads that innerText leaves out: a dropdown's shown value, an empty box's placeholder,
  // a plot's axis and legend titles.
  for (const el of document.querySelectorAll('input[role=combobox]')) {
    const label = labelOf(el);
    if (visible(el) && !isExcluded(el) && !nameDropdowns.includes(label) && el.value.trim())
      extra.push([`dropdown “${label}”`, el.value]);
  }
  for (const el of document.querySelectorAll('textarea, input')) {
    if (el.placeholder && !el.value && visible(el) && !isExcluded(el))
      extra.push([`placeholder “${labelOf(el)}”`, el.placeholder]);
  }
  for (const el of document.querySelectorAll(
      'svg .role-title text, svg .role-axis-title text, svg .role-legend-title text')) {
    if (visible(el) && el.textContent.trim()) extra.push(['plot title', el.textContent.trim()]);
  }
  // innerText of the live page with the excluded parts hidden for this one synchronous read (a detached clone's
  // innerText would be its textContent: closed accordions and hidden tabs included). Nothing is painted meanwhile.
  const style = document.createElement('style');
  style.textContent = `[${HIDE}]{display:none !important}`;
  const marked = [];
  const mark = el => { if (!el.hasAttribute(HIDE)) { el.setAttribute(HIDE, ''); marked.push(el); } };
  try {
    for (const s of excluded) document.querySelectorAll(s).forEach(mark);
    for (const grid of document.querySelectorAll('[role=grid]'))
      if (dataHeaderTables.includes(grid.getAttribute('aria-label')))
        grid.querySelectorAll('[role=columnheader]').forEach(mark);
    document.head.appendChild(style);
    const panels = [...document.querySelectorAll('.tabitem[role=tabpanel]')];
    const panel = panels.find(visible);
    const panelText = panel ? panel.innerText : '';
    panels.forEach(mark);
    return {panel: panelText, page: document.body.innerText, extra};
  } finally {
    style.remove();
    marked.forEach(el => el.removeAttribute(HIDE));
  }
}
"""


def visible_text(page, labels: dict, check_cells: bool = False) -> dict:
    """{"panel": the open tab's text, "page": the text outside the tabs (title, tab bar, toasts), "extra": [what,
    text] of dropdown values, placeholders and plot titles}, with EXCLUDED left out; check_cells: keep the
    dataframes' cells (the Models table's cells are the app's own words: status, what a model is good for)."""
    names = [labels[k] for k in NAME_DROPDOWNS] + [EN[k] for k in NAME_DROPDOWNS] + [ZH[k] for k in NAME_DROPDOWNS]
    tables = [d[k] for d in (EN, ZH) for k in DATA_HEADER_TABLES]
    excluded = [s for s in EXCLUDED if not (check_cells and s == CELLS)]
    return page.evaluate(_DETECT_JS, [excluded, names, tables])


def untranslated(page, labels: dict, data_words: set[str] = frozenset(),
                 check_cells: bool = False) -> dict[str, list[tuple[str, list[str]]]]:
    """{"page" / "panel" / "extra": [(line, its English words)]}; data_words: words of the input data shown
    inside a server message (e.g. the sample's label names in the data summary)."""
    allowed = ALLOWED | {w.lower() for w in data_words}
    texts = visible_text(page, labels, check_cells)
    found = {where: [(line.strip(), words) for line in texts[where].splitlines()
                     if (words := english_words(line, allowed))] for where in ("page", "panel")}
    found["extra"] = [(f"[{what}] {value}", words) for what, value in texts["extra"]
                      if (words := english_words(value, allowed))]
    return found


# ---------------------------------------------------------------- driving the tabs

def _panel(page):
    """The open tab's panel: buttons are looked up inside it (Refresh, Stop, ... recur in other tabs)."""
    return page.locator(".tabitem[role=tabpanel]").filter(visible=True)


def _btn(page, name: str):
    return _panel(page).get_by_role("button", name=name, exact=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_timeout(300)


def _finished(page, timeout=180_000) -> None:
    page.wait_for_function("() => !document.querySelector('.generating, .pending')", timeout=timeout)


def _act(page, click, timeout=180_000) -> None:
    """Click, then wait for the page's text to change and every event to end (one wait for any output)."""
    before = page.evaluate("() => document.body.innerText")
    click()
    page.wait_for_function("b => document.body.innerText !== b && !document.querySelector('.generating, .pending')",
                           arg=before, timeout=timeout)
    page.wait_for_timeout(500)
    _finished(page, timeout)


def _example(page, start: str) -> None:
    _panel(page).get_by_text(start).first.click()  # an Examples button (labelled with the example's text)


def run_generate(page, L):
    panel = _panel(page)
    panel.get_by_label(L["prompt"], exact=True).fill("Say hello in one short sentence.")
    _btn(page, L["send"]).click()
    page.wait_for_function("() => [...document.querySelectorAll('.message-wrap [data-testid=bot]')]"
                           ".some(m => m.innerText.trim())", timeout=120_000)
    _finished(page)
    # the stats line (a Markdown outside the chat), complete once it names how the reply ended
    page.wait_for_function("() => [...document.querySelectorAll('.tabitem[role=tabpanel] .prose')].some("
                           "p => p.checkVisibility() && !p.closest('.message-wrap') && /\\d.*·/.test(p.innerText))",
                           timeout=30_000)
    page.wait_for_timeout(500)


def run_sentiment(page, L):
    from playwright.sync_api import expect

    panel = _panel(page)
    _example(page, "The battery lasts all day")
    expect(panel.get_by_label(L["text"], exact=True)).to_have_value(re.compile("^The battery"), timeout=10_000)
    _btn(page, L["classify"]).click()
    panel.locator("[data-testid=label-output-value]").wait_for(timeout=60_000)
    _finished(page)
    panel.get_by_text(L["batch"], exact=True).click()
    panel.get_by_label(L["batch_text"], exact=True).fill(
        "Fantastic staff and a lovely room.\nThe screen cracked on day one.")
    _btn(page, L["classify_all"]).click()
    _btn(page, L["download"]).wait_for(timeout=60_000)
    _finished(page)


def run_summarise(page, L):
    from playwright.sync_api import expect

    panel = _panel(page)
    _example(page, "The city council voted on Tuesday")
    expect(panel.get_by_label(L["summary_text"], exact=True)).to_have_value(
        re.compile("^The city council voted on Tuesday"), timeout=10_000)
    _btn(page, L["summarise"]).click()
    expect(panel.get_by_label(L["summary"], exact=True)).not_to_have_value("", timeout=180_000)
    _finished(page)
    page.wait_for_timeout(500)


def run_translate(page, L):
    from playwright.sync_api import expect

    panel = _panel(page)
    _example(page, "I would like a cup of coffee")
    expect(panel.get_by_label(L["source_text"], exact=True)).to_have_value(re.compile("^I would like"),
                                                                          timeout=10_000)
    _btn(page, L["translate"]).click()
    expect(panel.get_by_label(L["translation"], exact=True)).not_to_have_value("", timeout=180_000)
    _finished(page)
    page.wait_for_timeout(500)


def run_lab(page, L):
    panel = _panel(page)
    _act(page, lambda: _btn(page, L["score"]).click())
    _btn(page, L["predict"]).click()
    panel.locator("svg.marks").first.wait_for(timeout=120_000)
    _finished(page)
    _act(page, lambda: _btn(page, L["compare"]).click())
    panel.locator(".prose table").first.wait_for(timeout=30_000)


def run_lab_attention(page, L):
    _act(page, lambda: _btn(page, L["show_attention"]).click())
    page.locator("#attention-table td").first.wait_for(timeout=30_000)


def run_lab_positions(page, L):
    _act(page, lambda: _btn(page, L["plot_positions"]).click())
    page.locator("#rope-curves svg.marks").first.wait_for(timeout=30_000)


def run_lab_lstm(page, L):
    _act(page, lambda: _btn(page, L["train_lstm"]).click())
    _act(page, lambda: _btn(page, L["compare3"]).click())
    page.locator("#lstm-compare table").wait_for(timeout=30_000)
    page.locator("#lstm-gates svg.marks").first.wait_for(timeout=30_000)


def run_evaluate(page, L):
    from playwright.sync_api import expect

    panel = _panel(page)
    expect(panel.get_by_role("combobox", name=L["task"], exact=True)).to_be_visible()  # its default: sentiment
    limit = panel.locator("#evaluate-limit input[type=number]")
    limit.fill("5")
    limit.press("Enter")
    _btn(page, L["evaluate"]).click()
    _btn(page, L["download_json"]).wait_for(timeout=180_000)
    _finished(page)
    page.wait_for_timeout(500)


def run_finetune(page, L):
    panel = _panel(page)
    _act(page, lambda: _btn(page, L["check_data"]).click())
    panel.locator("[role=gridcell]").first.wait_for(timeout=30_000)  # the preview's first rows
    _act(page, lambda: _btn(page, L["estimate"]).click(), timeout=300_000)
    panel.get_by_text(L["past_runs"], exact=True).click()
    page.wait_for_timeout(3000)  # the picker fills (2 s timer) and shows the newest run, if any
    _finished(page)


def run_models(page, L):
    _btn(page, L["refresh"]).click()
    _panel(page).locator("[role=gridcell]").first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    _finished(page)


def _topic_labels() -> set[str]:
    """The label names of the Fine-tune tab's default sample: data, shown in the data summary ("labels: ...")."""
    from lmdemo.data import tabular

    _, train, _ = tabular.sample_path("topics (4 classes)")
    rows, _ = tabular.read_rows(str(train))
    return {str(r["label"]) for r in rows}


# (slug, tab label key, run) in the page's order
TABS = [("generate", "tab_generate", run_generate), ("sentiment", "tab_sentiment", run_sentiment),
        ("summarise", "tab_summarize", run_summarise), ("translate", "tab_translate", run_translate),
        ("lm-lab", "tab_lab", run_lab), ("lm-lab-attention", "lab_attention", run_lab_attention),
        ("lm-lab-positions", "lab_positions", run_lab_positions), ("lm-lab-lstm", "lab_lstm", run_lab_lstm),
        ("evaluate", "tab_evaluate", run_evaluate),
        ("finetune", "tab_finetune", run_finetune), ("models", "tab_models", run_models)]


def _run_every_tab(page, L, lang, after=None):
    for slug, key, run in TABS:
        _tab(page, L[key])
        run(page, L)
        _shot(page, f"{lang}-{slug}")
        if after:
            after(slug)


def test_chinese_page_has_no_untranslated_english(browser, base_url):
    """Each tab of the zh page, after a run, shows no English words but names, identifiers, input and output.

    All tabs run before the verdict, so one failure lists every untranslated line, grouped per tab.
    """
    page = _page(browser, base_url, locale="zh-CN")
    page.get_by_role("tab", name=ZH["tab_generate"], exact=True).wait_for(timeout=30_000)
    # the attention reading quotes the model's tokens of the view's default text (the document-start token too)
    data_words = {"finetune": _topic_labels(),
                  "lm-lab-attention": set(re.findall(r"[A-Za-z]+", "The cat sat on the mat because it was warm.")) | {"endoftext"}}
    report: dict[str, list[tuple[str, list[str]]]] = {}
    seen: set[tuple[str, str]] = set()

    def check(slug):
        found = untranslated(page, ZH, data_words.get(slug, set()), check_cells=slug == "models")
        for where, group in (("page", "page (outside the tabs: title, tab bar, messages)"), ("panel", slug),
                             ("extra", slug)):
            for line, words in found[where]:
                if (group, line) not in seen:  # the page's own lines recur on every tab
                    seen.add((group, line))
                    report.setdefault(group, []).append((line, words))

    _run_every_tab(page, ZH, "zh", after=check)
    lines = [f"[{group}]\n" + "\n".join(f"  {', '.join(dict.fromkeys(words))}  ←  {line}" for line, words in items)
             for group, items in report.items()]
    message = "Untranslated English on the zh-CN page (words ← their line):\n" + "\n".join(lines)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "zh-untranslated.txt").write_text(message + "\n" if report else "none\n", encoding="utf-8")
    assert not report, message


def test_english_page_screenshots(browser, base_url):
    """The same clicks on the en page: en-<tab>.png beside each zh-<tab>.png, to compare the two."""
    page = _page(browser, base_url, locale="en-US")
    _run_every_tab(page, EN, "en")
