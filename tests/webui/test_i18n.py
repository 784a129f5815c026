"""The server's own lines in both languages: every template exists in both, with the same fields."""

import string

import pytest

from webui import i18n
from webui.i18n import EN, KEY_PREFIX, LINES, ZH, message, say, word


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(LINES))
def test_each_line_has_both_languages_with_the_same_fields(key):
    en, zh = LINES[key]
    assert fields(zh) <= fields(en) and fields(en) - fields(zh) <= {"s"}, key  # Chinese has no plural "s"


def test_labels_exist_in_both_languages():
    assert set(EN) == set(ZH)


def test_browser_keys_cannot_collide_with_data():
    # The browser translates any string equal to a key: a column named "text" must stay "text".
    keys = set(i18n.I18N.translations["en"])
    assert keys and all(k.startswith(KEY_PREFIX) for k in keys)
    assert not {"text", "prompt", "label", "summary", "model", "task", "sample"} & keys


def test_a_line_and_a_word_in_chinese():
    assert say("sentences", "zh", n=3, s="s") == "**3** 句"
    assert say("sentences", "en", n=3, s="s") == "**3** sentences"
    assert word("accuracy", "zh") == "准确率" and word("accuracy", "en") == "accuracy"
    assert word("some-adapter", "zh") == "some-adapter"


@pytest.mark.parametrize("english, chinese", [
    ("demo mode: 60 steps at most", "演示模式：最多 60 步"),
    ("the worker exited with code -9", "训练进程以代码 -9 退出"),
    ("A training job (topics) is already running; wait for it or cancel it.", "训练任务（topics）正在运行；请等待它结束或取消它。"),
    ("notes.csv: skipped 2 row(s) with an empty text or label.", "notes.csv：跳过了 2 行 text or label 为空的数据。"),
])
def test_library_sentences_in_chinese(english, chinese):
    assert message(english, "zh") == chinese
    assert message(english, "en") == english


def test_an_unknown_sentence_is_shown_as_written():
    assert message("Something new happened.", "zh") == "Something new happened."


def test_error_prefix_follows_the_language():
    from lmdemo.errors import InputError

    assert i18n.error_message(InputError("Upload a CSV/JSONL/Parquet file or pick a sample set."), "zh") == \
        "输入有误：请上传 CSV/JSONL/Parquet 文件或选择示例数据集。"
    assert i18n.error_message(InputError("x"), "en") == "Input problem: x"


def test_chinese_only_sentences_render_with_the_fields_their_callers_pass():
    """ZH_ONLY has the Chinese of sentences the library writes in English: each is rendered here through the page
    function that uses it, and every placeholder is filled."""
    from types import SimpleNamespace

    from webui.handlers import _verdict, estimate_text, versus
    from webui.i18n import ZH_ONLY
    from webui.theory import _reading

    paired = {"metric": "accuracy", "higher_is_better": True, "n": 4, "wins": 3, "losses": 0, "ties": 1,
              "difference": 0.75, "ci95": [0.25, 1.0]}
    verdict = _verdict(paired, ("accuracy", 0.5, 0.75), "zh")
    est = SimpleNamespace(total_steps=12, total_seconds=30.0, seconds_per_epoch=90.0, steps_per_epoch=6,
                          seconds_per_step=2.5, peak_memory_mb=300.0, trainable_params=1000, total_params=9000)
    run = {"train_seconds": 20, "seconds_per_step": 1.5, "peak_memory_mb": 300, "steps": 12}
    attention = SimpleNamespace(top=[[(0, 1.0)], [(1, 0.6), (0, 0.4)]], tokens=["<s>", "cat"], causal=True)
    rendered = {
        "paired": verdict[0], "worse": verdict[1], "estimate": estimate_text(est, "zh"),
        "estimate_run": estimate_text(est, "zh"), "took": versus(run, None, "zh"),
        "estimated_took": versus(run, {"total_seconds": 18, "seconds_per_step": 1.4, "peak_memory_mb": 280}, "zh"),
        "seconds": versus(run, None, "zh"), "per_step": versus(run, None, "zh"),
        "attn_first": _reading(attention, "zh")[0], "attn_reads": _reading(attention, "zh")[1],
        "attn_then": _reading(attention, "zh")[1], "attn_itself": _reading(attention, "zh")[1],
        "rope_note": ZH_ONLY["rope_note"],
    }
    assert set(rendered) == set(ZH_ONLY)
    fixed = {"attn_then": "，其次是 ", "attn_itself": "自身"}
    expected = {"paired": "胜 3，负 0，平 1", "worse": "0\\.500", "estimate": "每轮约 1.5 分钟",
                "estimate_run": "12 步：约 30 秒训练", "took": "实际用时 20 秒", "estimated_took": "估计 18 秒", "seconds": "20 秒", "per_step": "1.50 秒/步",
                "attn_first": "'<s>' 是第一个词元", "attn_reads": "'cat' 最关注", "rope_note": "RoPE", **fixed}
    for key, text in rendered.items():
        assert expected[key] in text and "{" not in text and "}" not in text, (key, text)
