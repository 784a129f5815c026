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
