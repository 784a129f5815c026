import pytest

from lmdemo.errors import InputError
from lmdemo.jobs.translation import TranslationRequest, build_prompt, split_sentences, translate


@pytest.mark.parametrize("source, target, text, expected", [
    ("en", "fr", "I would like a cup of coffee, please.", ["café"]),
    ("en", "de", "The children are playing in the garden.", ["Kinder", "Garten"]),
    ("en", "es", "Thank you very much for your help.", ["gracias", "ayuda"]),
    ("en", "zh", "I like to drink tea.", ["茶"]),
    ("fr", "en", "Le chat dort sur le canapé.", ["cat", "sofa"]),
    ("zh", "en", "我喜欢苹果。", ["apple"]),
])
def test_simple_sentences(prepared, source, target, text, expected):
    out = translate(TranslationRequest(text, source, target)).translation
    assert "\n" not in out and all(word.lower() in out.lower() for word in expected), out


def test_multi_sentence_input_keeps_every_sentence(prepared):
    out = translate(TranslationRequest("Good morning. Where is the station?", "en", "fr")).translation
    assert "gare" in out.lower() and out.count("?") == 1


def test_split_sentences():
    assert split_sentences("Hi there. How are you?\nFine!") == ["Hi there.", "How are you?", "Fine!"]
    assert split_sentences("你好。今天天气很好！") == ["你好。", "今天天气很好！"]


def test_prompt_shape():
    prompt = build_prompt("Hello.", "en", "de", shots=2)
    assert prompt.count("English:") == 3 and prompt.endswith("English: Hello.\nGerman:")


@pytest.mark.parametrize("kwargs, word", [({"source": "xx"}, "source"), ({"target": "klingon"}, "target"),
                                          ({"source": "fr", "target": "fr"}, "both"), ({"shots": 99}, "shots")])
def test_bad_requests(kwargs, word):
    with pytest.raises(InputError, match=word):
        TranslationRequest("hello", **kwargs)
